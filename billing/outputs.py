"""Files finance staff and scripts read: written atomically, safe in spreadsheets."""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Iterable, Sequence

from billing.attribution import ReconciliationRow
from billing.evidence import AttributionLine
from billing.ledger import Invoice
from billing.money import ZERO
from billing.fileio import atomic_write_bytes
from pricing_models.base import REPORT_GROUPS

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """Text that a spreadsheet would run as a formula is prefixed with a quote (OWASP CSV injection).

    Numbers stay numbers: only strings are changed.
    """
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def plain(value: Decimal | None) -> str:
    """A Decimal without exponent or trailing zeros beyond the cents: 12.5 -> 12.50, 1E+3 -> 1000.00."""
    if value is None:
        return ""
    text = format(value.normalize(), "f")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([plain(v) if isinstance(v, Decimal) else safe_cell(v) for v in row])
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def amounts_by_group(lines) -> dict[str, Decimal]:
    """A document's rounded amounts summed by report group (fees, cloud, markup, subsidies, adjustments)."""
    sums: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for line in lines:
        sums[REPORT_GROUPS[line.kind]] += line.amount
    return sums


def write_invoices_csv(path: Path, documents: list[Invoice], pdf_names: dict) -> None:
    """A row per document of the service month: invoices, credit notes (negative), statements."""
    header = ["invoice_number", "document_type", "corrects", "status", "bill_to", "bill_to_kind", "bill_to_name",
              "month", "currency", "issue_date", "due_date", "fees", "cloud", "markup", "subsidies", "adjustments",
              "subtotal", "total", "pdf", "data_fingerprint"]
    rows = []
    for doc in documents:
        sums = amounts_by_group(doc.lines)
        pdf = pdf_names.get(doc.number or (doc.party_kind, doc.party_id), "")
        rows.append([doc.number or "", doc.document_type, doc.corrects or "", doc.status, doc.party_id,
                     doc.party_kind, doc.bill_to.get("display_name", ""), doc.month, doc.currency,
                     doc.issue_date.isoformat(), doc.due_date.isoformat(), sums["fees"], sums["cloud"],
                     sums["markup"], sums["subsidies"], sums["adjustments"], doc.subtotal, doc.total, pdf,
                     doc.data_fingerprint])
    write_csv(path, header, rows)


def write_attribution_csv(path: Path, lines: Iterable[AttributionLine]) -> None:
    header = ["cluster", "hub", "community", "component", "allocation", "currency", "cost", "provider",
              "billing_account", "note", "corrects"]
    write_csv(path, header, ([l.cluster, l.hub, l.community, l.component, l.allocation, l.currency, l.cost,
                              l.provider, l.billing_account, l.note, l.corrects] for l in lines))


def write_reconciliation_csv(path: Path, rows: Iterable[ReconciliationRow]) -> None:
    header = ["provider", "billing_account", "currency", "input_total", "attributed", "unattributed", "difference"]
    write_csv(path, header, ([r.provider, r.billing_account, r.currency, r.input_total, r.attributed, r.unattributed,
                              r.difference] for r in rows))
