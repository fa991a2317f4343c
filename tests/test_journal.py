"""billing export journal: the accountant's double-entry books, from the ledger, as CSV and Beancount.

The small organization of tests/helpers.py (see test_recovery), January 2022
issued on 2022-02-10:
- alpha: invoice TST-2022-0001, 1000 tier fee + 500 uplift + 522.60 cloud = 2022.60;
- beta: statement TST-ST-2022-0001, 1500 fee + 55.25 cloud - 1555.25 subsidy = 0.00;
- the grant: invoice TST-2022-0002, 1555.25 (beta's charges);
February, issued on 2022-03-10, has 999.00 more of shared cost, split evenly:
alpha TST-2022-0003 2522.10, beta's statement TST-ST-2022-0002, the grant's
TST-2022-0004 2054.75.
Payments are put in the ledger's payment tables directly.
"""
import dataclasses
import datetime as dt
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal as D
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from billing import ledger
from billing.config import Accounts
from billing.errors import BillingError, ConfigError, InputError
from billing.journal import (CSV_HEADER, Entry, Posting, beancount_text, check_balanced, journal_entries,
                             line_account, write_journal)
from billing.ledger import Allocation, Invoice, Line, Payment
from billing.ledger.schema import AllocationRow, PaymentRow
from billing.months import Month
from helpers import billing_in, read_csv, small_focus_rows, small_org, two_month_world, write_focus_csv
from pricing_models.base import REPORT_GROUPS, SECTIONS

BEAN_CHECK = Path(sys.executable).parent / "bean-check"



@pytest.fixture()
def world(tmp_path, ledger_url):
    return two_month_world(tmp_path, ledger_url)


def billing(world, *args) -> int:
    return billing_in(world, *args, words=2 if args[0] == "export" else 1)


def run(world, month: str, issue_date: str) -> int:
    return billing(world, "run", "--month", month, "--workers", "1", "--issue-date", issue_date)


def export(world, first: str, last: str, fmt: str = "csv") -> int:
    return billing(world, "export", "journal", "--from", first, "--to", last, "--format", fmt)


def journal_csv(world, first: str, last: str) -> list[dict]:
    assert export(world, first, last) == 0
    return read_csv(world["out"] / f"journal-{first}-{last}.csv")


def signed(row: dict) -> D:
    return D(row["debit"] or "0") - D(row["credit"] or "0")


def documents(world) -> list[Invoice]:
    engine = ledger.open_ledger(world["ledger"])
    try:
        return ledger.all_finalized(engine)
    finally:
        engine.dispose()


def add_payment(world, pid: int, received_on: str, amount: str, reference: str, allocations=()) -> None:
    """A payment (and what it was applied to) straight into the ledger's tables."""
    now = dt.datetime(2022, 4, 1, tzinfo=dt.timezone.utc)
    engine = ledger.open_ledger(world["ledger"])
    try:
        with Session(engine) as session, session.begin():
            session.add(PaymentRow(id=pid, received_on=dt.date.fromisoformat(received_on), amount=D(amount),
                                   currency="USD", reference=reference, payer="Accounts Payable", source="bank.csv",
                                   fingerprint=f"fp-{pid}", created_at=now, actor="test"))
            session.flush()
            for number, paid in allocations:
                session.add(AllocationRow(payment_id=pid, number=number, amount=D(paid), how="matched",
                                          applied_at=now, actor="test"))
    finally:
        engine.dispose()


# ---- the books tie to the ledger ---------------------------------------------------------------------


def test_each_entry_balances_and_the_books_tie_to_the_ledger(world):
    assert run(world, "2022-01", "2022-02-10") == 0
    assert run(world, "2022-02", "2022-03-10") == 0
    rows = journal_csv(world, "2022-01", "2022-03")
    assert list(rows[0]) == CSV_HEADER

    by_entry = defaultdict(lambda: defaultdict(D))
    for r in rows:
        assert bool(r["debit"]) != bool(r["credit"]), r            # a debit or a credit, never both
        assert D(r["debit"] or r["credit"]) > 0
        by_entry[r["entry_id"]][r["currency"]] += signed(r)
    assert all(total == 0 for currencies in by_entry.values() for total in currencies.values())

    docs = documents(world)
    assert set(by_entry) == {d.number for d in docs}               # every document, statements included
    receivable = sum(signed(r) for r in rows if r["account"].startswith("Assets:Receivable:"))
    assert receivable == sum(d.total for d in docs) == D("2022.60") + D("1555.25") + D("2522.10") + D("2054.75")
    for d in docs:                                                  # each document's receivable is its total
        assert sum(signed(r) for r in rows if r["entry_id"] == d.number and r["account"].startswith("Assets:")) \
            == d.total

    # The revenue split ties to the line kinds of the documents.
    credits = defaultdict(D)
    for r in rows:
        credits[r["account"]] -= signed(r)
    by_group = defaultdict(D)
    for d in docs:
        for line in d.lines:
            by_group["grant" if d.party_kind == "funder" else REPORT_GROUPS[line.kind]] += line.amount
    assert credits["Income:ServiceFees"] == by_group["fees"] == 2 * (D(1500) + D(1500))
    assert credits["Income:CloudCostRecovered"] == by_group["cloud"] == D("522.60") + D("55.25") + D("1022.10") \
        + D("554.75")
    assert credits["Income:Subsidies"] == by_group["subsidies"] == -(D("1555.25") + D("2054.75"))
    assert credits["Income:GrantFunding"] == by_group["grant"] == D("1555.25") + D("2054.75")
    assert {r["account"] for r in rows} == {"Assets:Receivable:Alpha", "Assets:Receivable:Grant",
                                            "Income:ServiceFees", "Income:CloudCostRecovered", "Income:Subsidies",
                                            "Income:GrantFunding"}
    statement = [r for r in rows if r["entry_id"] == "TST-ST-2022-0001"]
    assert {r["account"] for r in statement} == {"Income:ServiceFees", "Income:CloudCostRecovered",
                                                 "Income:Subsidies"}   # nothing due: no receivable
    alpha = [r for r in rows if r["document"] == "TST-2022-0001"]
    assert [(r["date"], r["party"], r["account"], r["debit"], r["credit"]) for r in alpha] == [
        ("2022-02-10", "community:alpha", "Assets:Receivable:Alpha", "2022.60", ""),
        ("2022-02-10", "community:alpha", "Income:ServiceFees", "", "1500.00"),
        ("2022-02-10", "community:alpha", "Income:CloudCostRecovered", "", "522.60")]


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_a_credit_note_reverses_its_invoice(world):
    assert run(world, "2022-01", "2022-02-10") == 0
    assert billing(world, "void", "TST-2022-0001", "--reason", "wrong customer", "--workers", "1",
                   "--issue-date", "2022-02-11") == 0
    rows = journal_csv(world, "2022-02", "2022-02")
    original = [(r["account"], signed(r)) for r in rows if r["entry_id"] == "TST-2022-0001"]
    credit = [(r["account"], signed(r)) for r in rows if r["entry_id"] == "TST-CN-2022-0001"]
    assert credit == [(account, -amount) for account, amount in original] and len(credit) == 3
    assert {r["entry_type"] for r in rows if r["entry_id"] == "TST-CN-2022-0001"} == {"credit_note"}
    assert "reverses TST-2022-0001" in next(r["description"] for r in rows if r["entry_id"] == "TST-CN-2022-0001")
    alpha = sum(signed(r) for r in rows if r["account"] == "Assets:Receivable:Alpha")
    assert alpha == 0                                   # nothing is owed for a voided invoice


def restate_alpha_compute(world, cost="150.00"):
    rows = small_focus_rows()
    rows[0][9] = cost            # alpha's compute on the shared cluster (was 100.0000000001): +50.00
    write_focus_csv(world["tmp"] / "focus" / "2022-01.csv", rows)


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_an_amended_month_credit_note_and_replacement(world):
    assert run(world, "2022-01", "2022-02-10") == 0
    restate_alpha_compute(world)
    assert billing(world, "amend", "--month", "2022-01", "--reason", "AWS restated January compute",
                   "--issue-date", "2022-03-01", "--workers", "1") == 0
    rows = journal_csv(world, "2022-02", "2022-03")
    entries = {r["entry_id"]: r for r in rows}
    assert entries["TST-CN-2022-0001"]["entry_type"] == "credit_note"
    assert "replaces TST-2022-0001" in entries["TST-2022-0003"]["description"]
    alpha = sum(signed(r) for r in rows if r["account"] == "Assets:Receivable:Alpha")
    assert alpha == D("2072.60")                          # the replacement only
    cloud = -sum(signed(r) for r in rows if r["account"] == "Income:CloudCostRecovered")
    assert cloud == D("572.60") + D("55.25")              # alpha's restated cloud and beta's


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_a_difference_carried_to_the_next_invoice_is_a_prior_period_adjustment(world):
    assert run(world, "2022-01", "2022-02-10") == 0
    restate_alpha_compute(world)
    assert billing(world, "amend", "--month", "2022-01", "--reason", "late restatement", "--policy",
                   "next-invoice", "--workers", "1") == 0
    assert run(world, "2022-02", "2022-03-10") == 0
    rows = journal_csv(world, "2022-03", "2022-03")
    february = [(r["account"], signed(r)) for r in rows if r["entry_id"] == "TST-2022-0003"]
    assert february == [("Assets:Receivable:Alpha", D("2572.10")), ("Income:ServiceFees", D("-1500.00")),
                        ("Income:CloudCostRecovered", D("-1022.10")),
                        ("Income:PriorPeriodAdjustments", D("-50.00"))]


def test_payments_debit_the_bank_and_credit_receivables_or_unapplied(world):
    assert run(world, "2022-01", "2022-02-10") == 0
    add_payment(world, 1, "2022-03-01", "2022.60", "TST-2022-0001", [("TST-2022-0001", "2022.60")])
    add_payment(world, 2, "2022-03-15", "1600.00", "grant TST-2022-0002", [("TST-2022-0002", "1555.25")])
    add_payment(world, 3, "2022-03-20", "50.00", "no idea")
    add_payment(world, 4, "2022-04-02", "10.00", "April")                # outside the range
    rows = journal_csv(world, "2022-02", "2022-03")
    payments = defaultdict(list)
    for r in rows:
        if r["entry_type"] == "payment":
            payments[r["entry_id"]].append((r["date"], r["account"], r["document"], r["party"], signed(r)))
    assert dict(payments) == {
        "payment-1": [("2022-03-01", "Assets:Bank", "", "", D("2022.60")),
                      ("2022-03-01", "Assets:Receivable:Alpha", "TST-2022-0001", "community:alpha", D("-2022.60"))],
        "payment-2": [("2022-03-15", "Assets:Bank", "", "", D("1600.00")),
                      ("2022-03-15", "Assets:Receivable:Grant", "TST-2022-0002", "funder:grant", D("-1555.25")),
                      ("2022-03-15", "Liabilities:UnappliedPayments", "", "", D("-44.75"))],
        "payment-3": [("2022-03-20", "Assets:Bank", "", "", D("50.00")),
                      ("2022-03-20", "Liabilities:UnappliedPayments", "", "", D("-50.00"))]}
    balances = defaultdict(D)
    for r in rows:
        balances[r["account"]] += signed(r)
    assert (balances["Assets:Receivable:Alpha"], balances["Assets:Receivable:Grant"]) == (0, 0)   # paid in full
    assert balances["Assets:Bank"] == D("3672.60")

    # A payment applied to something the ledger does not have is refused, with the payment and the number.
    add_payment(world, 5, "2022-03-21", "5.00", "typo", [("TST-2022-0999", "5.00")])
    assert export(world, "2022-03", "2022-03") == 2


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_the_beancount_file_passes_bean_check(world):
    from beancount import loader
    from beancount.core import data

    assert run(world, "2022-01", "2022-02-10") == 0
    assert billing(world, "void", "TST-2022-0002", "--reason", "wrong grant", "--workers", "1",
                   "--issue-date", "2022-02-12") == 0
    add_payment(world, 1, "2022-02-20", "2000.00", 'TST-2022-0001 "partial" \\ thanks', [("TST-2022-0001", "2000.00")])
    add_payment(world, 2, "2022-02-21", "-5.00", "refund of an overpayment")
    assert export(world, "2022-01", "2022-02", "beancount") == 0
    path = world["out"] / "journal-2022-01-2022-02.beancount"
    entries, errors, options = loader.load_file(str(path))
    assert errors == []
    transactions = [e for e in entries if isinstance(e, data.Transaction)]
    assert len(transactions) == 6                  # 2 invoices, a statement, a credit note, 2 payments
    opened = {e.account for e in entries if isinstance(e, data.Open)}
    assert opened == {p.account for t in transactions for p in t.postings}
    balance = defaultdict(D)
    for t in transactions:
        for p in t.postings:
            balance[p.account] += p.units.number
    assert balance["Assets:Receivable:Alpha"] == D("22.60")
    assert balance["Assets:Receivable:Grant"] == 0
    assert balance["Liabilities:UnappliedPayments"] == D("5.00")
    assert options["operating_currency"] == ["USD"]
    payment = next(t for t in transactions if t.meta["entry-id"] == "payment-1")
    assert 'TST-2022-0001 "partial" \\ thanks' in payment.narration and payment.links == {"TST-2022-0001"}

    if not BEAN_CHECK.exists():
        pytest.fail(f"bean-check is not installed beside {sys.executable}")
    done = subprocess.run([str(BEAN_CHECK), str(path)], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_the_range_is_by_date_of_issue_or_receipt(world, capsys):
    assert run(world, "2022-01", "2022-02-10") == 0
    assert run(world, "2022-02", "2022-03-10") == 0
    add_payment(world, 1, "2022-03-31", "1.00", "last day of March")
    add_payment(world, 2, "2022-04-01", "2.00", "first day of April")
    february = journal_csv(world, "2022-02", "2022-02")
    assert {r["entry_id"] for r in february} == {"TST-2022-0001", "TST-2022-0002", "TST-ST-2022-0001"}
    march = journal_csv(world, "2022-03", "2022-03")
    assert {r["entry_id"] for r in march} == {"TST-2022-0003", "TST-2022-0004", "TST-ST-2022-0002", "payment-1"}
    assert {r["date"] for r in march if r["entry_type"] != "payment"} == {"2022-03-10"}
    out = capsys.readouterr().out
    assert "journal 2022-03 to 2022-03: 4 entries (2 invoice(s), 1 statement(s), 1 payment(s))" in out


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_an_empty_range_says_what_the_ledger_holds(world, capsys):
    assert run(world, "2022-01", "2022-02-10") == 0
    capsys.readouterr()
    assert export(world, "2023-01", "2023-06") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no finalized document was issued and no payment received from 2023-01 to 2023-06")
    assert "documents issued from 2022-02-10 to 2022-02-10 and no payment" in err
    assert "Traceback" not in err
    assert not list(world["out"].glob("journal-*"))
    assert export(world, "2022-03", "2022-01") == 2
    assert "--from/--to: 2022-03 is after 2022-01" in capsys.readouterr().err
    assert export(world, "2022-13", "2022-12") == 2


# ---- accounts: classification, configuration, the balance check ----------------------------------


def test_every_line_kind_has_an_account():
    accounts = Accounts()
    community = Invoice("community", "uca", "2022-01", "USD", dt.date(2022, 2, 1), dt.date(2022, 3, 1), (), {}, {},
                        "fp")
    funder = Invoice("funder", "grant", "2022-01", "USD", dt.date(2022, 2, 1), dt.date(2022, 3, 1), (), {}, {}, "fp")
    expected = {"fee": "service_fees", "uplift": "service_fees", "usage": "service_fees", "minimum": "service_fees",
                "one_off_charge": "service_fees", "cloud": "cloud_recovered", "markup": "markup",
                "cap": "caps_and_credits", "discount": "caps_and_credits", "one_off_credit": "caps_and_credits",
                "prepaid": "prepaid", "adjustment": "prior_period", "subsidy": "subsidies"}
    assert set(expected) == set(SECTIONS)
    for kind, field in expected.items():
        line = Line(SECTIONS[kind], kind, "x", D(1), D(1))
        assert line_account(community, line) == field and hasattr(accounts, field)
        assert line_account(funder, line) == "grant_revenue"


def _document(party_kind: str, party_id: str, number: str | None, lines: list[tuple[str, str]],
              issued="2022-02-05", status="finalized") -> Invoice:
    return Invoice(party_kind, party_id, "2022-01", "USD", dt.date.fromisoformat(issued), dt.date(2022, 3, 7),
                   tuple(Line(SECTIONS[k], k, k, D(a), D(a)) for k, a in lines), {"display_name": party_id}, {}, "fp",
                   status=status, number=number)


def test_markup_caps_prepaid_and_adjustments_with_configured_accounts():
    accounts = Accounts(receivable="Assets:AR", service_fees="Income:Fees", markup="Income:Fees",
                        prepaid="Liabilities:Deferred")
    doc = _document("community", "data_lab.x", "INV-2022-0001",
                    [("fee", "1000.00"), ("cloud", "200.00"), ("markup", "20.00"), ("cap", "-120.00"),
                     ("adjustment", "5.55"), ("prepaid", "-600.00"), ("one_off_credit", "-5.00")])
    [entry] = journal_entries([doc], [], Month(2022, 2), Month(2022, 2), accounts)
    assert [(p.account, p.amount) for p in entry.postings] == [
        ("Assets:AR:Data-lab-x", D("500.55")), ("Income:Fees", D("-1020.00")),
        ("Income:CloudCostRecovered", D("-200.00")), ("Income:CapsAndCredits", D("125.00")),
        ("Income:PriorPeriodAdjustments", D("-5.55")), ("Liabilities:Deferred", D("600.00"))]
    assert entry.date == dt.date(2022, 2, 5) and entry.links == ("INV-2022-0001",)
    # Outside the range, or a draft: no entry.
    assert journal_entries([doc], [], Month(2022, 3), Month(2022, 4), accounts) == []
    draft = _document("community", "x", None, [("fee", "1.00")], status="draft")
    assert journal_entries([draft], [], Month(2022, 2), Month(2022, 2), accounts) == []


def test_a_payment_in_another_currency_than_its_document_is_refused():
    doc = _document("community", "uca", "INV-2022-0001", [("fee", "100.00")])
    paid = Payment(7, dt.date(2022, 2, 20), D("100.00"), "EUR", "INV-2022-0001", None, "bank.csv",
                   (Allocation(7, "INV-2022-0001", D("100.00"), "matched", dt.datetime(2022, 2, 21)),))
    with pytest.raises(InputError, match="payment 7 of 2022-02-20 is in EUR but applied to INV-2022-0001 in USD"):
        journal_entries([doc], [paid], Month(2022, 2), Month(2022, 2), Accounts())


def test_amounts_have_the_currency_decimals(tmp_path):
    yen = dataclasses.replace(_document("community", "uca", "INV-2022-0001", [("fee", "1500"), ("cloud", "20")]),
                              currency="JPY")
    usd = _document("community", "lab", "INV-2022-0002", [("fee", "1500"), ("cloud", "20.5")])
    entries = journal_entries([yen, usd], [], Month(2022, 2), Month(2022, 2), Accounts())
    write_journal(tmp_path, entries, Month(2022, 2), Month(2022, 2), "csv", "T")
    rows = read_csv(tmp_path / "journal-2022-02-2022-02.csv")
    assert [(r["currency"], r["debit"], r["credit"]) for r in rows] == [
        ("JPY", "1520", ""), ("JPY", "", "1500"), ("JPY", "", "20"),
        ("USD", "1520.50", ""), ("USD", "", "1500.00"), ("USD", "", "20.50")]
    write_journal(tmp_path, entries, Month(2022, 2), Month(2022, 2), "beancount", "T")
    text = (tmp_path / "journal-2022-02-2022-02.beancount").read_text()
    assert 'option "operating_currency" "JPY"' in text and "open Income:ServiceFees JPY,USD" in text
    from beancount import loader
    assert loader.load_file(str(tmp_path / "journal-2022-02-2022-02.beancount"))[1] == []


def test_two_parties_never_share_a_receivable_account():
    docs = [_document("community", "data_lab", "INV-2022-0001", [("fee", "1.00")]),
            _document("community", "data.lab", "INV-2022-0002", [("fee", "2.00")])]
    with pytest.raises(InputError, match="community:data_lab and community:data.lab would share the receivable "
                                         "account Assets:Receivable:Data-lab"):
        journal_entries(docs, [], Month(2022, 2), Month(2022, 2), Accounts())


def test_an_entry_that_does_not_balance_to_the_cent_is_refused():
    ok = Entry("X-1", dt.date(2022, 1, 1), "invoice", "p", "n",
               (Posting("Assets:Receivable:P", D("1.00"), "USD"), Posting("Income:ServiceFees", D("-1.00"), "USD")))
    check_balanced(ok)
    off = Entry("X-2", dt.date(2022, 1, 1), "invoice", "p", "n",
                (Posting("Assets:Receivable:P", D("1.00"), "USD"), Posting("Income:ServiceFees", D("-0.99"), "USD")))
    with pytest.raises(BillingError, match=r"X-2 of 2022-01-01 does not balance: its USD postings sum to 0.01"):
        check_balanced(off)
    split = Entry("X-3", dt.date(2022, 1, 1), "invoice", "p", "n",
                  (Posting("Assets:Receivable:P", D("1.005"), "USD"),
                   Posting("Income:ServiceFees", D("-1.005"), "USD")))
    with pytest.raises(BillingError, match="not a whole number of the currency's minor unit"):
        check_balanced(split)
    two = Entry("X-4", dt.date(2022, 1, 1), "payment", "p", "n",
                (Posting("Assets:Bank", D("1.00"), "USD"), Posting("Assets:Bank", D("-1.00"), "EUR")))
    with pytest.raises(BillingError, match="its USD postings sum to 1.00"):
        check_balanced(two)
    # The writers never see such an entry: journal_entries checks every entry it makes.
    assert "open Assets:Receivable:P USD" in beancount_text([ok], Month(2022, 1), Month(2022, 1), "T")


def test_account_names_are_validated(tmp_path):
    org = small_org(tmp_path, accounts={"bank": "Assets:Bank:Checking", "grant_revenue": "Income:Grants"})
    assert (org.accounts.bank, org.accounts.grant_revenue, org.accounts.markup) == (
        "Assets:Bank:Checking", "Income:Grants", "Income:CloudMarkup")
    for accounts, message in [
            ({"markup": "Income:markup"}, "accounts.markup: 'Income:markup' is not an account name"),
            ({"bank": "Liabilities:Bank"}, "bank: 'Liabilities:Bank' must be an Assets account"),
            ({"unapplied": "Assets:Receivable:Unapplied"}, "is the receivable account 'Assets:Receivable' or under it"),
            ({"fees": "Income:Fees"}, "accounts.fees: Extra inputs are not permitted")]:
        with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
            small_org(tmp_path, accounts=accounts)
