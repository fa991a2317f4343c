import datetime as dt
from decimal import Decimal as D

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing import ledger
from billing.errors import FinalizedInvoiceChanged
from billing.months import Month
from helpers import small_org
from pricing_models import Charge


def charges(fee="1000.00"):
    return {"alpha": [Charge("fee", "Fee", D(fee), "USD", community="alpha")],
            "beta": [Charge("fee", "Fee", D("1500.00"), "USD", community="beta"),
                     Charge("subsidy", "Paid by grant", D("-1500.00"), "USD", community="beta"),
                     Charge("subsidy", "Beta", D("1500.00"), "USD", bill_to="grant", community="beta")]}


def record(engine, org, month, fee="1000.00", finalize=True):
    invoices = ledger.build_invoices(org, month, charges(fee), "fp", issue_date=month.end)
    return ledger.record_month(engine, org, month, invoices, finalize=finalize)


def test_numbers_sequential_per_year_and_reruns_take_none(tmp_path, ledger_url):
    org = small_org(tmp_path)
    engine = ledger.open_ledger(ledger_url)
    first = record(engine, org, Month(2022, 1))
    # beta is fully grant-funded: a statement (nothing due), numbered in its own series
    assert first.created == ["TST-2022-0001", "TST-ST-2022-0001", "TST-2022-0002"]
    again = record(engine, org, Month(2022, 1))
    assert again.created == [] and sorted(again.unchanged) == sorted(first.created)
    assert record(engine, org, Month(2022, 2)).created[0] == "TST-2022-0003"
    # December issued in January: the next year's sequence.
    assert record(engine, org, Month(2022, 12)).created[0] == "TST-2023-0001"
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(ledger.InvoiceRow)) == 9
    engine.dispose()


def test_changed_data_after_finalization_changes_nothing(tmp_path, ledger_url):
    org = small_org(tmp_path)
    engine = ledger.open_ledger(ledger_url)
    record(engine, org, Month(2022, 3))
    before = ledger.month_invoices(engine, "2022-03")
    with pytest.raises(FinalizedInvoiceChanged) as err:
        record(engine, org, Month(2022, 3), fee="1100.00")
    assert "community alpha: invoice TST-2022-0001 total 1000.00 USD, recomputed 1100.00 (difference +100.00)" in str(err.value)
    assert ledger.month_invoices(engine, "2022-03") == before
    engine.dispose()


def test_drafts_take_no_number_and_are_replaced(tmp_path, ledger_url):
    org = small_org(tmp_path)
    engine = ledger.open_ledger(ledger_url)
    record(engine, org, Month(2022, 4), finalize=False)
    drafts = record(engine, org, Month(2022, 4), fee="900.00", finalize=False)
    assert [i.number for i in drafts.invoices] == [None, None, None]
    assert drafts.invoices[0].total == D("900.00")
    final = record(engine, org, Month(2022, 4))
    assert [i.status for i in final.invoices] == ["finalized"] * 3
    assert final.created[0] == "TST-2022-0001"  # drafts used no number
    engine.dispose()


def test_amounts_exact_on_both_backends(tmp_path, ledger_url):
    org = small_org(tmp_path)
    engine = ledger.open_ledger(ledger_url)
    inv = ledger.build_invoices(org, Month(2022, 5), {"alpha": [Charge("cloud", "c", D("0.123456789012345678"), "USD")]},
                                "fp", issue_date=dt.date(2022, 6, 1))
    out = ledger.record_month(engine, org, Month(2022, 5), inv, finalize=True)
    line = out.invoices[0].lines[0]
    assert line.amount_exact == D("0.123456789012345678") and line.amount == D("0.12")
    assert out.invoices[0].issue_date == dt.date(2022, 6, 1) and out.invoices[0].due_date == dt.date(2022, 7, 1)
    engine.dispose()


def test_concurrent_runs_never_duplicate_or_skip_numbers(tmp_path, ledger_url):
    import threading

    from billing.errors import BillingError

    org = small_org(tmp_path)
    engine = ledger.open_ledger(ledger_url)
    record(engine, org, Month(2022, 1))
    barrier, outcomes = threading.Barrier(4), []

    def worker():
        barrier.wait()
        try:
            outcomes.append(record(engine, org, Month(2022, 2)).created)
        except BillingError as err:
            outcomes.append(str(err))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    created = [o for o in outcomes if isinstance(o, list) and o]
    assert created == [["TST-2022-0003", "TST-ST-2022-0002", "TST-2022-0004"]]
    numbers = sorted(i.number for m in ("2022-01", "2022-02") for i in ledger.month_invoices(engine, m))
    assert numbers == [f"TST-2022-{n:04d}" for n in range(1, 5)] + ["TST-ST-2022-0001", "TST-ST-2022-0002"]
    engine.dispose()


def test_a_month_changes_when_its_money_changes_not_its_wording(tmp_path, ledger_url):
    """A new version of this software that words a line differently must not make a finalized month look restated."""
    import dataclasses

    org = small_org(tmp_path)
    engine = ledger.open_ledger(ledger_url)
    record(engine, org, Month(2022, 3))
    reworded = {k: [dataclasses.replace(c, description=c.description.upper() + " (new wording)") for c in v]
                for k, v in charges().items()}
    reordered = {k: list(reversed(v)) for k, v in reworded.items()}
    again = ledger.record_month(engine, org, Month(2022, 3), ledger.build_invoices(
        org, Month(2022, 3), reordered, "fp2", issue_date=dt.date(2022, 4, 20)), finalize=True)
    assert again.created == [] and len(again.unchanged) == 3
    engine.dispose()
