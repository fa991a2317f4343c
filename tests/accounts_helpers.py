"""Small ledgers with invoices to pay, for the payments, receivables and statement tests.

The small organization (tests/helpers.py) invoiced for January and February
2022, each month issued on the first day of the next month and due 30 days
later:

    TST-2022-0001  alpha  January   1000.00 USD  issued 2022-02-01, due 2022-03-03
    TST-ST-2022-0001 beta January   statement (the grant pays everything)
    TST-2022-0002  grant  January   1500.00 USD  issued 2022-02-01, due 2022-03-03
    TST-2022-0003  alpha  February  1200.00 USD  issued 2022-03-01, due 2022-03-31
    TST-2022-0004  grant  February  1500.00 USD  issued 2022-03-01, due 2022-03-31
"""
from __future__ import annotations

import contextlib
import csv
import datetime as dt
from decimal import Decimal as D
from pathlib import Path

import yaml

from billing import ledger
from billing.ledger import Evidence
from billing.months import Month
from helpers import small_org, small_org_data
from pricing_models import Charge

JAN, FEB = Month(2022, 1), Month(2022, 2)
FEES = {JAN: "1000.00", FEB: "1200.00"}


def charges(fee: str, currency: str = "USD") -> dict:
    return {"alpha": [Charge("fee", "Fee", D(fee), currency, community="alpha")],
            "beta": [Charge("fee", "Fee", D("1500.00"), "USD", community="beta"),
                     Charge("subsidy", "Paid by grant", D("-1500.00"), "USD", community="beta"),
                     Charge("subsidy", "Beta", D("1500.00"), "USD", bill_to="grant", community="beta")]}


def record(engine, org, month: Month, fee: str, currency: str = "USD"):
    invoices = ledger.build_invoices(org, month, charges(fee, currency), "fp", issue_date=month.end)
    return ledger.record_month(engine, org, month, invoices, finalize=True)


def invoiced_ledger(tmp_path: Path, url: str):
    """(organization, engine) with January and February finalized."""
    org = small_org(tmp_path)
    engine = ledger.open_ledger(url)
    for month, fee in FEES.items():
        record(engine, org, month, fee)
    return org, engine


def amend_alpha(engine, org, month: Month, fee: str, issue_date: dt.date):
    """Reissue alpha's month with another fee: a credit note and a replacement invoice."""
    invoices = ledger.build_invoices(org, month, charges(fee), "fp2", issue_date=issue_date)
    with ledger.amending_month(engine, org, month, invoices, policy="reissue", reason="fee corrected",
                               issue_date=issue_date, evidence=Evidence("e", "{}"), fingerprint="fp2") as c:
        return c


def void(engine, org, number: str, issue_date: dt.date):
    with ledger.voiding(engine, org, number, reason="sent by mistake", issue_date=issue_date) as c:
        return c


def write_org_yaml(tmp_path: Path, **overrides) -> Path:
    path = tmp_path / "org.yaml"
    path.write_text(yaml.safe_dump(small_org_data(**overrides), sort_keys=False))
    return path


def write_bank_csv(path: Path, rows: list[list[str]], header=("date", "amount", "currency", "reference", "payer"),
                   delimiter: str = ",", encoding: str = "utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as fh:
        writer = csv.writer(fh, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


@contextlib.contextmanager
def disposing(engine):
    try:
        yield engine
    finally:
        engine.dispose()
