"""Write a sample bank export that pays the sample's invoices, deterministically.

    python -m billing.sample.bank --ledger sqlite:///out/ledger.db --out sample/bank/2022-02_2023-01.csv

Run `make run` first: it finalizes 2022 in `out/ledger.db`. The export is
what the issuer's bank account received from February 2022 to January 2023
(`date, amount, currency, reference, payer`), for `billing payments import`.
Its payers behave as payers do:

- most invoices are paid in full around their due date (some early, some a
  few weeks late), their numbers written in the reference in various ways
  ("OHC-2022-0001", "Invoice ohc 2022 0001", "OHC20220001 PO 4500123");
- the November invoices of some communities, and one September invoice, are
  paid in part; one invoice is paid $100.00 too much;
- one July invoice is never paid;
- the funder pays two months' invoices in one transfer naming both;
- one payment is in EUR for a USD invoice (it stays unmatched: currency);
- one payment's reference names no invoice at all;
- December's invoices (due in February 2023) are mostly not paid yet.

The choices depend only on the documents' numbers and amounts (a SHA-256 of
the number, never the Python hash seed), so the same ledger gives the same
file.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import io
from decimal import Decimal
from pathlib import Path
from typing import Iterable

from billing.fileio import atomic_write_bytes
from billing.ledger import all_documents, open_ledger
from billing.ledger.payments import AccountDocument
from billing.money import round_money

LAST_DAY = dt.date(2023, 1, 31)
HEADER = ("date", "amount", "currency", "reference", "payer")


def _draw(number: str, what: str, modulo: int) -> int:
    """A deterministic draw in [0, modulo) for a document and a purpose."""
    return int(hashlib.sha256(f"{what}:{number}".encode()).hexdigest(), 16) % modulo


def _reference(doc: AccountDocument) -> str:
    """The number as a payer writes it, in one of a few usual ways."""
    year, seq = doc.number.split("-")[-2:]
    prefix = doc.number[: -len(year) - len(seq) - 2]
    return [doc.number, f"Invoice {doc.number.lower().replace('-', ' ')}", f"{prefix}{year}{seq} {doc.party_name}",
            f"Payment {doc.number} thank you", f"INV/{prefix}/{year}/{seq}"][_draw(doc.number, "style", 5)]


def _on(doc: AccountDocument, offset: int) -> dt.date:
    return doc.due_date + dt.timedelta(days=offset)


def bank_rows(documents: Iterable[AccountDocument]) -> list[tuple]:
    """The rows of the sample export: (date, amount, currency, reference, payer), by date."""
    invoices = [d for d in documents if d.document_type == "invoice" and d.status == "finalized" and d.total > 0]
    invoices.sort(key=lambda d: (d.issue_date, d.number))
    community = [d for d in invoices if d.party_kind == "community"]
    funder = [d for d in invoices if d.party_kind == "funder"]
    never = next(d for d in community if d.month == "2022-07")
    overpaid = next(d for d in community if d.month == "2022-05" and d.total >= 1000)
    partial_sep = next(d for d in community if d.month == "2022-09" and d.party_id != never.party_id)
    in_eur = next(d for d in reversed(community) if d.month == "2022-12")
    rows = []
    for doc in community:
        offset = _draw(doc.number, "when", 45) - 25          # from 25 days early to 19 days late
        amount, reference = doc.total, _reference(doc)
        if doc is never:
            continue
        if doc is overpaid:
            amount = doc.total + Decimal("100.00")
        elif doc is partial_sep:
            amount = round_money(doc.total * Decimal("0.6"), doc.currency)
        elif doc.month == "2022-11" and _draw(doc.number, "partial", 3) == 0:
            amount = round_money(doc.total / 2, doc.currency)
            reference = f"Part payment {doc.number}"
        elif doc is in_eur:
            rows.append((dt.date(2023, 1, 20), doc.total, "EUR", doc.number, doc.party_name))
            continue
        elif doc.month == "2022-12":
            offset = -_draw(doc.number, "early", 30)          # paid early, or (mostly) not yet
        if _on(doc, offset) <= LAST_DAY:
            rows.append((_on(doc, offset), amount, doc.currency, reference, doc.party_name))
    for first, second in zip(funder[0::2], funder[1::2]):    # two months in one transfer
        if _on(second, -3) <= LAST_DAY:
            rows.append((_on(second, -3), first.total + second.total, first.currency,
                         f"Grant payment {first.number} and {second.number}", first.party_name))
    rows.append((dt.date(2022, 10, 14), Decimal("250.00"), "USD", "TRANSFER 88213 THANK YOU", "J. Smith"))
    return sorted(rows, key=lambda r: (r[0], r[3]))


def write_bank_csv(path: Path, rows: list[tuple]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows([d.isoformat(), f"{a:.2f}", c, ref, payer] for d, a, c, ref, payer in rows)
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m billing.sample.bank",
                                     description="Write a sample bank export paying the sample's invoices.")
    parser.add_argument("--ledger", default="sqlite:///out/ledger.db", help="the ledger make run finalized")
    parser.add_argument("--out", type=Path, default=Path("sample/bank/2022-02_2023-01.csv"))
    args = parser.parse_args(list(argv) if argv is not None else None)
    engine = open_ledger(args.ledger)
    try:
        rows = bank_rows(all_documents(engine))
    finally:
        engine.dispose()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_bank_csv(args.out, rows)
    print(f"{args.out}: {len(rows)} payment(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
