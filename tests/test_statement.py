"""billing statement: a party's statement of account, its balances, and the PDF a customer reads."""
import datetime as dt
import re
from decimal import Decimal as D

import pytest
from pypdf import PdfReader

from accounts_helpers import (JAN, amend_alpha, disposing, invoiced_ledger, record, write_bank_csv,
                              write_org_yaml)
from billing import ledger
from billing.cli import main
from billing.config import parse_organization
from billing.months import Month
from billing.payments import import_payments, read_bank_file
from billing.receivables import Book, account_statement
from helpers import small_org_data

BANK = [["2022-02-20", "400.00", "USD", "TST-2022-0001 <b>first</b> part", "Alpha"],
        ["2022-03-25", "500.00", "USD", "TST-2022-0005", "Alpha"],
        ["2022-04-05", "1200.00", "USD", "Invoice TST 2022 0003", "Alpha"],
        ["2022-03-30", "1500.00", "USD", "TST-2022-0002", "Big Grant"]]


def paid_ledger(tmp_path, url):
    """January and February; alpha pays 400.00 of January, which is then amended to 900.00 (credit note and
    replacement TST-2022-0005), pays the replacement's rest and February; the grant pays January."""
    org, engine = invoiced_ledger(tmp_path, url)
    path = write_bank_csv(tmp_path / "bank.csv", BANK[:1])
    import_payments(engine, path, read_bank_file(path), prefix="TST")
    amend_alpha(engine, org, JAN, "900.00", dt.date(2022, 3, 10))
    path = write_bank_csv(tmp_path / "bank.csv", BANK)
    import_payments(engine, path, read_bank_file(path), prefix="TST")
    return org, engine


def test_statement_balances_add_up_and_agree_with_the_receivables(tmp_path, ledger_url):
    org, engine = paid_ledger(tmp_path, ledger_url)
    with disposing(engine):
        documents, payments = ledger.all_documents(engine), ledger.all_payments(engine)
    alpha = ("community", "alpha")
    whole = account_statement(documents, payments, alpha, "USD", dt.date(2022, 1, 1), dt.date(2022, 4, 30))
    assert whole.opening == 0
    assert [(e.date.isoformat(), e.kind, e.reference, e.amount, e.balance) for e in whole.entries] == [
        ("2022-02-01", "invoice", "TST-2022-0001", D("1000.00"), D("1000.00")),
        ("2022-02-20", "payment", "TST-2022-0001", D("-400.00"), D("600.00")),
        ("2022-03-01", "invoice", "TST-2022-0003", D("1200.00"), D("1800.00")),
        ("2022-03-10", "credit_note", "TST-CN-2022-0001", D("-1000.00"), D("800.00")),
        ("2022-03-10", "invoice", "TST-2022-0005", D("900.00"), D("1700.00")),
        ("2022-03-25", "payment", "TST-2022-0005", D("-500.00"), D("1200.00")),
        ("2022-04-05", "payment", "TST-2022-0003", D("-1200.00"), D("0.00")),
    ]
    assert whole.closing == 0 and whole.aging["total"] == 0
    # A later period starts from what the earlier one ended with.
    march = account_statement(documents, payments, alpha, "USD", dt.date(2022, 3, 1), dt.date(2022, 3, 31))
    assert march.opening == D("600.00") and march.closing == D("1200.00")
    assert march.opening + march.invoiced + march.credited - march.received == march.closing
    assert (march.invoiced, march.credited, march.received) == (D("2100.00"), D("-1000.00"), D("500.00"))
    # The closing balance is what the receivables say is open for the party on the last day.
    book = Book(documents, payments, dt.date(2022, 3, 31))
    open_alpha = sum(r.open for r in book.receivables() if r.document.party == "community:alpha")
    assert march.closing == open_alpha == march.aging["total"]
    assert march.aging["current"] == D("1200.00")         # TST-2022-0003 (due 03-31) and TST-2022-0005 (04-09)


def pdf_text(path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


def money_after(text: str, label: str) -> list[D]:
    return [D(m.replace(",", "")) for m in re.findall(re.escape(label) + r".*?\$([\d,]+\.\d\d)", text)]


def test_the_statement_pdf_shows_the_ledgers_figures(tmp_path, ledger_url, capsys):
    org, engine = paid_ledger(tmp_path, ledger_url)
    engine.dispose()
    org_path, out = write_org_yaml(tmp_path), tmp_path / "out"
    assert main(["statement", "--party", "alpha", "--from", "2022-03", "--to", "2022-03", "--org", str(org_path),
                 "--out", str(out), "--ledger", ledger_url]) == 0
    printed = capsys.readouterr().out
    assert "community alpha, 2022-03-01 to 2022-03-31 (USD)" in printed
    text = pdf_text(out / "statements" / "alpha-2022-03.pdf")
    assert "STATEMENT OF ACCOUNT" in text and "Alpha University" in text and "Test Hubs Inc." in text
    assert money_after(text, "Opening balance")[0] == D("600.00")
    assert money_after(text, "Closing balance")[0] == D("1200.00")
    for number in ("TST-2022-0003", "TST-CN-2022-0001", "TST-2022-0005"):
        assert number in text
    assert "TST-2022-0001" in text                 # the credit note says what it credits
    flat = " ".join(text.split())
    assert "Invoice for January 2022 (replaces TST-2022-0001)" in flat
    assert "Credit note for TST-2022-0001" in flat
    assert "Your reference: TST-2022-0005" in flat
    assert "$2,100.00" in text and "-$1,000.00" in text and "-$500.00" in text    # invoiced, credited, received
    assert "Nothing overdue on March 31, 2022" in flat
    assert "first" not in text                     # February's payment is before the period
    # The table, row by row, is the ledger's statement: the opening balance, then each row's amount and the
    # running balance after it.
    engine = ledger.open_ledger(ledger_url)
    with disposing(engine):
        statement = account_statement(ledger.all_documents(engine), ledger.all_payments(engine),
                                      ("community", "alpha"), "USD", dt.date(2022, 3, 1), dt.date(2022, 3, 31))
    table = text[text.index("Opening balance"):text.index("Closing balance")]
    printed_figures = [D(m.replace(",", "")) for m in re.findall(r"\$([\d,]+\.\d\d)", table)]
    assert printed_figures == [statement.opening] + [x for e in statement.entries for x in (abs(e.amount), e.balance)]
    assert printed_figures == [D("600.00"), D("1200.00"), D("1800.00"), D("1000.00"), D("800.00"), D("900.00"),
                               D("1700.00"), D("500.00"), D("1200.00")]


def test_the_statement_escapes_what_payers_write(tmp_path, ledger_url):
    org, engine = paid_ledger(tmp_path, ledger_url)
    engine.dispose()
    out = tmp_path / "out"
    assert main(["statement", "--party", "community:alpha", "--from", "2022-02", "--to", "2022-02", "--org",
                 str(write_org_yaml(tmp_path)), "--out", str(out), "--ledger", ledger_url]) == 0
    text = pdf_text(out / "statements" / "alpha-2022-02.pdf")
    assert "TST-2022-0001 <b>first</b> part" in " ".join(text.split())


def test_a_party_invoiced_in_two_currencies_gets_one_statement_per_currency(tmp_path):
    url = f"sqlite:///{tmp_path / 'l.db'}"
    org, engine = invoiced_ledger(tmp_path, url)
    data = small_org_data()
    data["communities"][0]["currency"] = "EUR"
    data["pricing_plans"][0]["currency"] = "EUR"
    in_euros = parse_organization(data, "test-org.yaml", tmp_path)
    with disposing(engine):
        record(engine, in_euros, Month(2022, 3), "800.00", currency="EUR")
    out = tmp_path / "out"
    assert main(["statement", "--party", "alpha", "--from", "2022-01", "--to", "2022-04", "--org",
                 str(write_org_yaml(tmp_path)), "--out", str(out), "--ledger", url]) == 0
    assert sorted(p.name for p in (out / "statements").iterdir()) == ["alpha-2022-04-EUR.pdf", "alpha-2022-04-USD.pdf"]
    euros = pdf_text(out / "statements" / "alpha-2022-04-EUR.pdf")
    assert "€800.00" in euros and "$" not in euros.replace("US Dollar", "")
    dollars = pdf_text(out / "statements" / "alpha-2022-04-USD.pdf")
    assert "$2,200.00" in dollars and "€" not in dollars


@pytest.mark.parametrize("party, message", [("nobody", "no such community or funder"),
                                            ("funder:alpha", "no such community or funder")])
def test_an_unknown_party_is_an_input_error(tmp_path, party, message, capsys):
    url = f"sqlite:///{tmp_path / 'l.db'}"
    org, engine = invoiced_ledger(tmp_path, url)
    engine.dispose()
    assert main(["statement", "--party", party, "--org", str(write_org_yaml(tmp_path)), "--out",
                 str(tmp_path / "out"), "--ledger", url]) == 2
    assert message in capsys.readouterr().err


def printable(opening="0.00", rows=(("100.00", None, "100.00"),), closing="100.00", aging=None):
    from billing.documents import AccountRow, Issuer, Party, StatementOfAccount

    account_rows = tuple(AccountRow(dt.date(2022, 3, i + 1), "invoice", f"T-2022-000{i + 1}", "Invoice",
                                    D(c) if c else None, D(p) if p else None, D(b)) for i, (c, p, b) in enumerate(rows))
    charges = sum((D(c) for c, _, _ in rows if c), D(0))
    received = sum((D(p) for _, p, _ in rows if p), D(0))
    return StatementOfAccount(Issuer("Test Hubs Inc."), Party("alpha", "Alpha <University>"), "USD",
                              dt.date(2022, 3, 31), dt.date(2022, 3, 1), dt.date(2022, 3, 31), D(opening),
                              account_rows, D(closing), charges, D(0), received,
                              tuple((aging or {"current": D(closing), "total": D(closing)}).items()))


def test_an_overdue_balance_with_a_credit_says_both():
    from invoices.render import render_statement_html

    doc = printable(rows=(("1000.00", None, "1000.00"), (None, "1100.00", "-100.00"), ("938.70", None, "838.70")),
                    closing="838.70", aging={"90+": D("938.70"), "credit": D("-100.00"), "total": D("838.70")})
    html = render_statement_html(doc)
    assert "$938.70 overdue, less your credit of $100.00, on March 31, 2022" in html
    assert "Alpha &lt;University&gt;" in html


def test_a_statement_whose_figures_do_not_add_up_is_refused():
    from invoices.render import RenderError, render_statement_html

    with pytest.raises(RenderError, match="the balance after T-2022-0001 .* is 90.00, but the rows add up to 100.00"):
        render_statement_html(printable(rows=(("100.00", None, "90.00"),), closing="90.00"))
    with pytest.raises(RenderError, match="is not a whole number of USD 0.01"):
        render_statement_html(printable(rows=(("100.005", None, "100.005"),), closing="100.005"))
