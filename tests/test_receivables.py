"""billing receivables: open amounts, days overdue and aging buckets, as of several dates."""
import csv
import datetime as dt
from decimal import Decimal as D

import pytest

from accounts_helpers import (JAN, amend_alpha, disposing, invoiced_ledger, void, write_bank_csv,
                              write_org_yaml)
from billing import ledger
from billing.cli import main
from billing.ledger.payments import AccountDocument, Allocation, Payment
from billing.payments import import_payments, read_bank_file
from billing.receivables import Book, aging_totals, bucket_of


def doc(number, total, issued, due, *, kind="invoice", status="finalized", corrects=None, party="alpha",
        currency="USD"):
    return AccountDocument(number, kind, status, "community", party, party.title(), currency, "2022-01",
                           dt.date.fromisoformat(issued), dt.date.fromisoformat(due), D(total), corrects)


def paid(pid, received, *allocs, currency="USD"):
    amount = sum((D(a) for _, a in allocs), D(0))
    return Payment(pid, dt.date.fromisoformat(received), amount, currency, "ref", None, "bank.csv",
                   tuple(Allocation(pid, n, D(a), "matched", dt.datetime(2022, 1, 1)) for n, a in allocs))


# ---- plain functions, inline ledgers ----------------------------------------------------------------


@pytest.mark.parametrize("days, bucket", [(-5, "current"), (0, "current"), (1, "1-30"), (30, "1-30"),
                                          (31, "31-60"), (60, "31-60"), (61, "61-90"), (90, "61-90"),
                                          (91, "90+"), (400, "90+")])
def test_buckets_by_days_past_due(days, bucket):
    assert bucket_of(D("1.00"), days) == bucket
    assert bucket_of(D("-1.00"), days) == "credit"


INVOICE = doc("T-2022-0001", "1000.00", "2022-02-01", "2022-03-03")


@pytest.mark.parametrize("as_of, open_, days, bucket", [
    ("2022-01-31", None, None, None),                  # not issued yet
    ("2022-02-01", "1000.00", 0, "current"),
    ("2022-03-03", "1000.00", 0, "current"),           # due today: not overdue
    ("2022-03-04", "1000.00", 1, "1-30"),
    ("2022-04-02", "1000.00", 30, "1-30"),
    ("2022-04-03", "400.00", 31, "31-60"),              # the partial payment of 2022-04-03 counts
    ("2022-05-03", "400.00", 61, "61-90"),
    ("2022-06-02", "400.00", 91, "90+"),
    ("2022-06-10", None, None, None),                   # paid in full on 2022-06-10
])
def test_one_invoice_aged_at_several_dates(as_of, open_, days, bucket):
    payments = [paid(1, "2022-04-03", ("T-2022-0001", "600.00")), paid(2, "2022-06-10", ("T-2022-0001", "400.00"))]
    rows = Book([INVOICE], payments, dt.date.fromisoformat(as_of)).receivables()
    if open_ is None:
        assert rows == []
        return
    (row,) = rows
    assert (row.open, row.days_overdue, row.bucket) == (D(open_), days, bucket)


def test_credit_notes_reduce_what_is_open_and_cancelled_invoices_leave_the_list():
    documents = [
        INVOICE,
        doc("T-2022-0002", "500.00", "2022-02-01", "2022-03-03"),
        doc("T-CN-2022-0001", "-200.00", "2022-02-15", "2022-02-15", kind="credit_note", corrects="T-2022-0002"),
        doc("T-2022-0003", "700.00", "2022-02-01", "2022-03-03", status="voided"),
        doc("T-CN-2022-0002", "-700.00", "2022-02-20", "2022-02-20", kind="credit_note", corrects="T-2022-0003"),
        doc("T-CN-2022-0003", "-50.00", "2022-02-20", "2022-02-20", kind="credit_note", corrects="T-2021-0099"),
    ]
    before = {r.document.number: r.open for r in Book(documents, [], dt.date(2022, 2, 10)).receivables()}
    assert before == {"T-2022-0001": D("1000.00"), "T-2022-0002": D("500.00"), "T-2022-0003": D("700.00")}
    after = Book(documents, [], dt.date(2022, 3, 1)).receivables()
    assert {r.document.number: (r.credited, r.open, r.bucket) for r in after} == {
        "T-2022-0001": (D("0"), D("1000.00"), "current"),
        "T-2022-0002": (D("-200.00"), D("300.00"), "current"),     # a partial credit note
        "T-CN-2022-0003": (D("0"), D("-50.00"), "credit"),         # its document is not in the ledger: a credit
    }
    totals = aging_totals(after)["USD"]
    assert (totals["current"], totals["credit"], totals["total"]) == (D("1300.00"), D("-50.00"), D("1250.00"))


def test_money_paid_towards_a_replaced_invoice_counts_towards_its_replacement():
    documents = [
        doc("T-2022-0001", "1000.00", "2022-02-01", "2022-03-03", status="credited"),
        doc("T-CN-2022-0001", "-1000.00", "2022-03-10", "2022-03-10", kind="credit_note", corrects="T-2022-0001"),
        doc("T-2022-0005", "900.00", "2022-03-10", "2022-04-09", corrects="T-2022-0001"),
    ]
    payments = [paid(1, "2022-03-01", ("T-2022-0001", "1000.00"))]
    on_first = Book(documents, payments, dt.date(2022, 3, 5)).receivables()
    assert on_first == []                             # paid in full, before it was corrected
    (row,) = Book(documents, payments, dt.date(2022, 3, 20)).receivables()
    assert (row.document.number, row.paid, row.open, row.bucket) == ("T-2022-0005", D("1000.00"), D("-100.00"),
                                                                     "credit")


# ---- from a real ledger, through the command ------------------------------------------------------------


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_receivables_csv_and_totals_at_several_dates(tmp_path, ledger_url, capsys):
    org, engine = invoiced_ledger(tmp_path, ledger_url)
    with disposing(engine):
        rows = [["2022-02-20", "400.00", "USD", "TST-2022-0001", "Alpha"],
                ["2022-03-30", "1550.00", "USD", "TST-2022-0002", "Big Grant"],
                ["2022-04-15", "25.00", "USD", "no number", ""]]
        path = write_bank_csv(tmp_path / "bank.csv", rows)
        import_payments(engine, path, read_bank_file(path), prefix="TST")
        amend_alpha(engine, org, JAN, "900.00", dt.date(2022, 3, 10))     # TST-2022-0001 -> TST-2022-0005
    org_path, out = write_org_yaml(tmp_path), tmp_path / "out"
    args = ["--org", str(org_path), "--out", str(out), "--ledger", ledger_url]
    expected = {
        # before anything was due: every invoice current, January's partly paid
        "2022-03-01": {"TST-2022-0001": ("600.00", "0", "current"), "TST-2022-0002": ("1500.00", "0", "current"),
                       "TST-2022-0003": ("1200.00", "0", "current"), "TST-2022-0004": ("1500.00", "0", "current")},
        # after the amendment: January's payment counts towards its replacement; January is overdue
        "2022-03-20": {"TST-2022-0002": ("1500.00", "17", "1-30"), "TST-2022-0003": ("1200.00", "0", "current"),
                       "TST-2022-0004": ("1500.00", "0", "current"), "TST-2022-0005": ("500.00", "0", "current")},
        # the grant paid 50.00 too much for January; February is 61 days overdue
        "2022-05-31": {"TST-2022-0002": ("-50.00", "0", "credit"), "TST-2022-0003": ("1200.00", "61", "61-90"),
                       "TST-2022-0004": ("1500.00", "61", "61-90"), "TST-2022-0005": ("500.00", "52", "31-60")},
    }
    for as_of, want in expected.items():
        assert main(["receivables", "--as-of", as_of, *args]) == 0
        table = read_csv(out / "receivables.csv")
        assert {r["number"]: (r["open"], r["days_overdue"], r["bucket"]) for r in table} == want
        for r in table:
            assert D(r["open"]) == D(r["total"]) + D(r["credited"]) - D(r["paid"])
        printed = capsys.readouterr().out
        assert f"receivables on {as_of}: {len(want)} open document(s)" in printed
    assert list(table[0]) == ["party", "party_name", "number", "document_type", "currency", "issue_date", "due_date",
                              "total", "credited", "paid", "open", "days_overdue", "bucket"]
    lines = printed.splitlines()
    assert lines[1].split() == ["currency", "current", "1-30", "31-60", "61-90", "90+", "credit", "total"]
    assert lines[2].split() == ["USD", "0.00", "0.00", "500.00", "2,700.00", "0.00", "-50.00", "3,150.00"]
    assert "1 payment(s) received but not applied to a document" in lines[3]


def test_voided_invoices_are_not_receivable(tmp_path, ledger_url):
    org, engine = invoiced_ledger(tmp_path, ledger_url)
    with disposing(engine):
        void(engine, org, "TST-2022-0003", dt.date(2022, 3, 5))
        numbers = [r.document.number for r in Book(ledger.all_documents(engine), ledger.all_payments(engine),
                                                   dt.date(2022, 3, 6)).receivables()]
        assert numbers == ["TST-2022-0001", "TST-2022-0002", "TST-2022-0004"]
        settled = Book(ledger.all_documents(engine), [], dt.date(2022, 3, 6)).receivables(settled=True)
        assert "TST-2022-0003" not in [r.document.number for r in settled]
