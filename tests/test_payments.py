"""billing payments: reading bank exports, matching by the number in the reference, applying by hand, reimporting."""
import csv
import datetime as dt
from decimal import Decimal as D

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from accounts_helpers import (JAN, amend_alpha, disposing, invoiced_ledger, void, write_bank_csv,
                              write_org_yaml)
from billing import ledger
from billing.cli import main
from billing.config import BankMapping
from billing.errors import InputError
from billing.ledger.schema import AllocationRow, PaymentRow
from billing.payments import (apply_payment, import_payments, number_finder, numbers_in, parse_amount,
                              read_bank_file)
from billing.receivables import Book


def do_import(engine, path, mapping=None):
    rows = read_bank_file(path, mapping) if mapping else read_bank_file(path)
    return import_payments(engine, path, rows, prefix="TST", actor="tester")


def allocations(engine) -> dict[str, D]:
    return ledger.paid_by_document(engine)


def payment_count(engine) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(PaymentRow))


def book(engine, as_of=None) -> Book:
    return Book(ledger.all_documents(engine), ledger.all_payments(engine), as_of)


# ---- finding numbers (plain functions) ----------------------------------------------------------------


@pytest.mark.parametrize("reference, found", [
    ("TST-2022-0001", ["TST-2022-0001"]),
    ("Invoice tst 2022 0001, thank you", ["TST-2022-0001"]),
    ("TST20220001 Alpha University", ["TST-2022-0001"]),
    ("ref INV/TST/2022/0001 PO 4500123", ["TST-2022-0001"]),
    ("pay tst-2022-1 now", ["TST-2022-0001"]),
    ("TST-2022-0001 and TST-2022-0003", ["TST-2022-0001", "TST-2022-0003"]),
    ("credit TST-CN-2022-0001", ["TST-CN-2022-0001"]),
    ("XTST-2022-0001", []),                       # part of another word
    ("TST-2022-00012345", []),                    # more digits than a number has
    ("2022-0001", []),                            # no prefix: could be anything
    ("TRANSFER 88213 THANK YOU", []),
])
def test_numbers_are_found_anywhere_in_a_reference_in_any_case_and_spacing(reference, found):
    assert numbers_in(reference, number_finder(["TST"]), ["TST"]) == found


def test_a_prefix_with_a_hyphen_is_found_with_or_without_it():
    prefixes = ["OHC-EU", "OHC"]
    finder = number_finder(prefixes)
    assert numbers_in("OHC EU 2023 0007", finder, prefixes) == ["OHC-EU-2023-0007"]
    assert numbers_in("ohceu-2023-0007 / OHC-2023-0002", finder, prefixes) == ["OHC-EU-2023-0007", "OHC-2023-0002"]


@pytest.mark.parametrize("text, mapping, value", [
    ("1234.56", BankMapping(currency="c"), D("1234.56")),
    ("-50", BankMapping(currency="c"), D("-50")),
    ("1.234,56", BankMapping(currency="c", decimal_separator=",", thousands_separator="."), D("1234.56")),
    ("1 234,56", BankMapping(currency="c", decimal_separator=",", thousands_separator=" "), D("1234.56")),
    ("1,234.56", BankMapping(currency="c", thousands_separator=","), D("1234.56")),
    ("1,234.56", BankMapping(currency="c"), None),            # a thousands separator the mapping does not expect
    ("12.50", BankMapping(currency="c", decimal_separator=","), None),
    ("1e3", BankMapping(currency="c"), None),
    ("$12", BankMapping(currency="c"), None),
])
def test_amounts_are_read_exactly_as_the_mapping_says(text, mapping, value):
    assert parse_amount(text, mapping) == value


# ---- matching and recording ---------------------------------------------------------------------------


def test_a_payment_is_matched_by_the_number_in_its_reference_never_by_its_amount(tmp_path, ledger_url):
    org, engine = invoiced_ledger(tmp_path, ledger_url)
    with disposing(engine):
        path = write_bank_csv(tmp_path / "bank.csv", [
            ["2022-02-20", "1000.00", "USD", "Invoice tst 2022 0001 - Alpha University", "Alpha University"],
            ["2022-02-21", "1500.00", "USD", "grant installment", "Big Grant"],    # the amount of TST-2022-0002
        ])
        result = do_import(engine, path)
        assert [r.outcome for r in result.recorded] == ["full", "unmatched"]
        assert result.recorded[1].match.reason == "no document number in the reference"
        assert allocations(engine) == {"TST-2022-0001": D("1000.00")}
        assert book(engine).open_amount("TST-2022-0002") == D("1500.00")
        events = [e.event for e in ledger.history(engine, "TST-2022-0001")]
        assert events == ["finalized", "paid"]


def test_partial_payments_and_overpayments_are_kept_as_paid(tmp_path, ledger_url):
    org, engine = invoiced_ledger(tmp_path, ledger_url)
    with disposing(engine):
        path = write_bank_csv(tmp_path / "bank.csv", [
            ["2022-02-20", "400.00", "USD", "TST-2022-0001 part 1", ""],
            ["2022-03-25", "1250.00", "USD", "TST-2022-0003", ""],
        ])
        result = do_import(engine, path)
        assert [r.outcome for r in result.recorded] == ["partial", "over"]
        assert result.recorded[0].open_after == (("TST-2022-0001", D("600.00")),)
        assert result.recorded[1].open_after == (("TST-2022-0003", D("-50.00")),)   # a credit of 50.00
        assert allocations(engine) == {"TST-2022-0001": D("400.00"), "TST-2022-0003": D("1250.00")}
        later = write_bank_csv(tmp_path / "bank2.csv", [["2022-03-01", "600.00", "USD", "rest of TST-2022-0001", ""]])
        assert [r.outcome for r in do_import(engine, later).recorded] == ["full"]
        assert book(engine).open_amount("TST-2022-0001") == 0


def test_one_payment_for_several_documents_pays_each_in_turn(tmp_path, ledger_url):
    org, engine = invoiced_ledger(tmp_path, ledger_url)
    with disposing(engine):
        path = write_bank_csv(tmp_path / "bank.csv", [
            ["2022-03-20", "3100.00", "USD", "Grant payment TST-2022-0002 and TST-2022-0004", "Big Grant"]])
        (rec,) = do_import(engine, path).recorded
        # 1500.00 settles the first; the other 1600.00 goes to the last named (100.00 too much)
        assert rec.match.allocations == (("TST-2022-0002", D("1500.00")), ("TST-2022-0004", D("1600.00")))
        assert rec.outcome == "over"


def test_a_payment_in_another_currency_is_not_matched_and_says_why(tmp_path, ledger_url):
    org, engine = invoiced_ledger(tmp_path, ledger_url)
    with disposing(engine):
        path = write_bank_csv(tmp_path / "bank.csv", [["2022-02-20", "1000.00", "EUR", "TST-2022-0001", ""]])
        (rec,) = do_import(engine, path).recorded
        assert rec.outcome == "unmatched"
        assert rec.match.reason == "the payment is in EUR, but TST-2022-0001 is in USD"
        assert allocations(engine) == {}


@pytest.mark.parametrize("reference, reason", [
    ("TST-2022-0099", "TST-2022-0099 is not a document in the ledger"),
    ("TST-ST-2022-0001", "TST-ST-2022-0001 is a statement: nothing is due on it"),
    ("TST-2023-0001 TST-2022-0001", "TST-2023-0001 is not a document in the ledger"),
])
def test_a_reference_naming_what_cannot_be_paid_stays_unmatched(tmp_path, reference, reason):
    org, engine = invoiced_ledger(tmp_path, f"sqlite:///{tmp_path / 'l.db'}")
    with disposing(engine):
        path = write_bank_csv(tmp_path / "bank.csv", [["2022-02-20", "10.00", "USD", reference, ""]])
        (rec,) = do_import(engine, path).recorded
        assert rec.match.reason == reason and not rec.match.allocations


def test_a_payment_naming_a_replaced_invoice_pays_its_replacement_and_a_voided_one_nothing(tmp_path, ledger_url):
    org, engine = invoiced_ledger(tmp_path, ledger_url)
    with disposing(engine):
        amend_alpha(engine, org, JAN, "900.00", dt.date(2022, 3, 10))     # TST-CN-2022-0001, TST-2022-0005
        void(engine, org, "TST-2022-0003", dt.date(2022, 3, 11))          # TST-CN-2022-0002
        path = write_bank_csv(tmp_path / "bank.csv", [["2022-03-15", "900.00", "USD", "TST-2022-0001", ""],
                                                      ["2022-03-15", "1200.00", "USD", "TST-2022-0003", ""],
                                                      ["2022-03-15", "5.00", "USD", "TST-CN-2022-0001", ""]])
        replaced, voided, credit_note = do_import(engine, path).recorded
        assert replaced.match.allocations == (("TST-2022-0005", D("900.00")),)
        assert replaced.match.notes == ("TST-2022-0001 was replaced by TST-2022-0005",)
        assert voided.match.reason == "TST-2022-0003 was voided (credit note TST-CN-2022-0002): nothing is due on it"
        assert credit_note.match.reason == "TST-CN-2022-0001 is a credit note: nothing is paid towards it"


# ---- reimporting ------------------------------------------------------------------------------------


def test_importing_the_same_rows_again_records_nothing_new(tmp_path, ledger_url):
    org, engine = invoiced_ledger(tmp_path, ledger_url)
    with disposing(engine):
        rows = [["2022-02-20", "100.00", "USD", "TST-2022-0001", "Alpha"],
                ["2022-02-20", "100.00", "USD", "TST-2022-0001", "Alpha"],     # two identical rows: both kept
                ["2022-02-21", "50.00", "USD", "unknown", ""]]
        first = do_import(engine, write_bank_csv(tmp_path / "jan.csv", rows))
        assert (len(first.recorded), first.already) == (3, 0)
        again = do_import(engine, write_bank_csv(tmp_path / "jan.csv", rows))
        assert (len(again.recorded), again.already) == (0, 3)
        # Another day's export, another file name, overlapping the first: only the new rows are recorded
        # (amounts written differently are the same amount).
        wider = [["2022-02-20", "100", "USD", "TST-2022-0001", "Alpha"]] + rows[1:] + [
            ["2022-02-20", "100.00", "USD", "TST-2022-0001", "Alpha"],           # a third identical row: new
            ["2022-03-01", "700.00", "USD", "TST-2022-0001", "Alpha"]]
        third = do_import(engine, write_bank_csv(tmp_path / "export-2022-03-02.csv", wider))
        assert (len(third.recorded), third.already) == (2, 3)
        assert payment_count(engine) == 5
        assert allocations(engine) == {"TST-2022-0001": D("1000.00")}


# ---- bad rows and atomicity -----------------------------------------------------------------------------


def test_bad_rows_name_file_line_column_and_value_and_nothing_is_recorded(tmp_path, ledger_url):
    org, engine = invoiced_ledger(tmp_path, ledger_url)
    with disposing(engine):
        path = write_bank_csv(tmp_path / "bank.csv", [
            ["2022-02-20", "100.00", "USD", "TST-2022-0001", ""],
            ["20.02.2022", "100.00", "USD", "TST-2022-0001", ""],
            ["2022-02-21", "1.234,50", "USD", "TST-2022-0001", ""],
            ["2022-02-22", "10.005", "USD", "TST-2022-0001", ""],
            ["2022-02-23", "10.00", "usd", "TST-2022-0001", ""],
            ["2022-02-24", "0.00", "USD", "TST-2022-0001", ""],
        ])
        with pytest.raises(InputError) as err:
            do_import(engine, path)
        text = str(err.value)
        assert text.startswith(f"{path}: 5 bad value(s); nothing was recorded")
        assert "line 3, column 'date': '20.02.2022' is not a date in the format %Y-%m-%d" in text
        assert "line 4, column 'amount': '1.234,50' is not an amount (written like 1234.56)" in text
        assert "line 5, column 'amount': '10.005' has more decimals than USD has" in text
        assert "line 6, column 'currency': 'usd' is not an ISO 4217 currency code" in text
        assert "line 7, column 'amount': '0.00' is not an amount received or refunded" in text
        assert payment_count(engine) == 0


def test_a_missing_column_says_which_and_suggests_a_mapping(tmp_path):
    path = write_bank_csv(tmp_path / "bank.csv", [["20.02.2022", "100,00", "TST-2022-0001"]],
                          header=("Buchungstag", "Betrag", "Verwendungszweck"))
    with pytest.raises(InputError, match=r"bank.csv, line 1: no column 'date', 'amount', 'reference', 'currency'; "
                                         r"the header has 'Buchungstag', 'Betrag', 'Verwendungszweck'.*--mapping"):
        read_bank_file(path)


def test_an_import_that_fails_half_way_records_nothing(tmp_path, ledger_url, monkeypatch):
    import billing.payments as payments

    org, engine = invoiced_ledger(tmp_path, ledger_url)
    with disposing(engine):
        path = write_bank_csv(tmp_path / "bank.csv", [["2022-02-20", "100.00", "USD", "TST-2022-0001", ""],
                                                      ["2022-02-21", "100.00", "USD", "TST-2022-0002", ""]])
        calls = []
        real = payments._allocate

        def failing(session, payment_id, number, *args):
            calls.append(number)
            if number == "TST-2022-0002":
                raise RuntimeError("disk full")
            return real(session, payment_id, number, *args)

        monkeypatch.setattr(payments, "_allocate", failing)
        with pytest.raises(RuntimeError):
            do_import(engine, path)
        assert calls == ["TST-2022-0001", "TST-2022-0002"]
        assert payment_count(engine) == 0 and allocations(engine) == {}
        assert [e.event for e in ledger.history(engine, "TST-2022-0001")] == ["finalized"]


# ---- another bank's columns --------------------------------------------------------------------------


GERMAN = {"date": "Buchungstag", "amount": "Betrag", "currency": "Währung",
          "reference": ["Verwendungszweck", "Info"], "payer": "Auftraggeber", "date_format": "%d.%m.%Y",
          "decimal_separator": ",", "thousands_separator": ".", "delimiter": ";", "encoding": "latin-1",
          "skip_lines": 2}


def test_a_named_mapping_reads_another_banks_export(tmp_path, ledger_url):
    org_path = write_org_yaml(tmp_path, bank_mappings={"hausbank": GERMAN})
    out = tmp_path / "out"
    path = tmp_path / "umsaetze.csv"
    path.write_text("Konto;DE00 1234\nZeitraum;Februar 2022\n"
                    "Buchungstag;Auftraggeber;Verwendungszweck;Info;Betrag;Währung\n"
                    "20.02.2022;Großer Zuschuss;Rechnung TST-2022-0002;Danke;1.500,00;USD\n"
                    "21.02.2022;Alpha Universität;Teilzahlung;tst 2022 0001;400,00;USD\n", encoding="latin-1")
    org, engine = invoiced_ledger(tmp_path, ledger_url)
    engine.dispose()
    assert main(["payments", "import", str(path), "--mapping", "hausbank", "--org", str(org_path), "--out",
                 str(out), "--ledger", ledger_url]) == 0
    engine = ledger.open_ledger(ledger_url)
    with disposing(engine):
        assert allocations(engine) == {"TST-2022-0002": D("1500.00"), "TST-2022-0001": D("400.00")}
        (first, second) = ledger.all_payments(engine)
        assert (first.payer, first.reference, first.received_on) == ("Großer Zuschuss", "Rechnung TST-2022-0002 Danke",
                                                                      dt.date(2022, 2, 20))
        assert first.source == "umsaetze.csv, line 4"


def test_an_unknown_mapping_lists_the_known_ones(tmp_path, capsys):
    org_path = write_org_yaml(tmp_path, bank_mappings={"hausbank": GERMAN})
    path = write_bank_csv(tmp_path / "bank.csv", [])
    assert main(["payments", "import", str(path), "--mapping", "sparkasse", "--org", str(org_path), "--out",
                 str(tmp_path / "out"), "--ledger", f"sqlite:///{tmp_path / 'l.db'}"]) == 2
    assert "--mapping 'sparkasse': no such bank mapping in the configuration; known: hausbank" in capsys.readouterr().err


def test_a_mapping_is_checked_when_the_configuration_is_loaded(tmp_path, capsys):
    org_path = write_org_yaml(tmp_path, bank_mappings={"x": {"date": "d", "currency": "c",
                                                             "account_currency": "EUR"}})
    assert main(["validate", "--org", str(org_path)]) == 2
    assert "bank_mappings.x" in capsys.readouterr().err


# ---- the unmatched file and applying by hand (the CLI) ------------------------------------------------


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_unmatched_payments_are_listed_and_applied_by_hand(tmp_path, ledger_url, capsys):
    org_path, out = write_org_yaml(tmp_path), tmp_path / "out"
    org, engine = invoiced_ledger(tmp_path, ledger_url)
    engine.dispose()
    path = write_bank_csv(tmp_path / "bank.csv", [
        ["2022-02-20", "1000.00", "USD", "TST-2022-0001", "Alpha"],
        ["2022-02-25", "1500.00", "USD", "GRANT INSTALLMENT 1", "Big Grant"],
        ["2022-03-02", "=HYPERLINK(1)", "USD", "x", ""],
    ])
    args = ["--org", str(org_path), "--out", str(out), "--ledger", ledger_url]
    assert main(["payments", "import", str(path), *args]) == 2          # a bad row: nothing recorded
    assert "line 4, column 'amount': '=HYPERLINK(1)' is not an amount" in capsys.readouterr().err
    write_bank_csv(path, [["2022-02-20", "1000.00", "USD", "TST-2022-0001", "Alpha"],
                          ["2022-02-25", "1500.00", "USD", "=GRANT INSTALLMENT 1", "Big Grant"],
                          ["2022-02-26", "90.00", "EUR", "TST-2022-0001", ""]])
    assert main(["payments", "import", str(path), *args]) == 0
    printed = capsys.readouterr().out
    assert "3 payment(s): 3 new, 0 imported before" in printed
    assert "1 pay in full, 0 in part, 0 too much; 2 unmatched" in printed
    rows = read_csv(out / "payments-unmatched.csv")
    assert rows == [
        {"id": "2", "date": "2022-02-25", "amount": "1500.00", "currency": "USD",
         "reference": "'=GRANT INSTALLMENT 1", "reason": "no document number in the reference"},
        {"id": "3", "date": "2022-02-26", "amount": "90.00", "currency": "EUR", "reference": "TST-2022-0001",
         "reason": "the payment is in EUR, but TST-2022-0001 is in USD"}]
    # By hand: part of payment 2 to the January grant invoice, then the rest; a wrong currency is refused.
    assert main(["payments", "apply", "2", "--invoice", "TST-2022-0002", "--amount", "1000", *args]) == 0
    assert "1,000.00 applied to TST-2022-0002, paid in part, $500.00 open" in capsys.readouterr().out
    assert read_csv(out / "payments-unmatched.csv")[0]["reason"] == ("partly applied (TST-2022-0002 1000); "
                                                                      "500.00 USD not applied")
    assert main(["payments", "apply", "2", "--invoice", "TST-2022-0002", "--amount", "600", *args]) == 2
    assert "payment 2 has 500.00 USD left to apply" in capsys.readouterr().err
    assert main(["payments", "apply", "2", "--invoice", "tst-2022-0002", *args]) == 2
    assert "--invoice tst-2022-0002: tst-2022-0002 is not a document in the ledger" in capsys.readouterr().err
    assert main(["payments", "apply", "2", "--invoice", "TST-2022-0002", *args]) == 0
    assert "paid in full" in capsys.readouterr().out
    assert main(["payments", "apply", "3", "--invoice", "TST-2022-0003", *args]) == 2
    assert "the payment is in EUR, but TST-2022-0003 is in USD" in capsys.readouterr().err
    assert main(["payments", "apply", "99", "--invoice", "TST-2022-0003", *args]) == 2
    assert [r["id"] for r in read_csv(out / "payments-unmatched.csv")] == ["3"]
    engine = ledger.open_ledger(ledger_url)
    with disposing(engine):
        with Session(engine) as s:
            hows = s.execute(select(AllocationRow.number, AllocationRow.amount, AllocationRow.how)
                             .order_by(AllocationRow.id)).all()
        assert [(n, D(a), h) for n, a, h in hows] == [("TST-2022-0001", D("1000.00"), "matched"),
                                                     ("TST-2022-0002", D("1000"), "manual"),
                                                     ("TST-2022-0002", D("500.00"), "manual")]
        # a document with money applied to it is not voided
        with pytest.raises(InputError, match="has a payment applied to it"):
            void(engine, org, "TST-2022-0002", dt.date(2022, 4, 1))


def test_apply_keeps_to_the_currencys_minor_unit(tmp_path):
    org, engine = invoiced_ledger(tmp_path, f"sqlite:///{tmp_path / 'l.db'}")
    with disposing(engine):
        do_import(engine, write_bank_csv(tmp_path / "b.csv", [["2022-02-20", "100.00", "USD", "no number", ""]]))
        with pytest.raises(InputError, match="USD has no smaller unit than 0.01"):
            apply_payment(engine, 1, "TST-2022-0001", D("10.005"))
        payment, open_after = apply_payment(engine, 1, "TST-2022-0001", D("10.00"), actor="me")
        assert open_after == D("990.00") and payment.id == 1
