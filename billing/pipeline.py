"""The monthly run, stage by stage: the one place the stages are wired.

`run_month` calls each stage through `stage`, a wrapper that is the identity
here and a Prefect task factory in `flows/` (retries, names, logs), so the CLI
and the scheduled flow run exactly the same steps.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Callable

from billing import ledger as ledger_mod
from billing.attribution import UNATTRIBUTED, AttributedCost, ReconciliationRow, attribute, reconcile
from billing.config import Organization
from billing.documents import document_for
from billing.errors import FinalizedInvoiceChanged, InputError, SourceError
from billing.ingest import IngestedMonth, ingest_month
from billing.ledger import Invoice, MonthRecord
from billing.money import ZERO
from billing.months import Month
from billing.outputs import write_attribution_csv, write_invoices_csv, write_reconciliation_csv
from billing.pricing import price_month
from billing.reports import revenue_rows, write_revenue_csv, write_revenue_plot
from billing.sources import SnapshotStore
from billing.sources.base import month_is_open
from billing.usage import MonthUsage, load_usage

log = logging.getLogger(__name__)
Stage = Callable[[Callable], Callable]


@dataclass(frozen=True)
class RunOptions:
    out_dir: Path = Path("out")
    draft: bool = False
    refresh: bool = False            # re-query live sources instead of reusing snapshots
    allow_estimated: bool = False    # finalize even if a source says figures are not final
    ledger_url: str | None = None
    workers: int | None = None       # processes rendering PDFs

    @property
    def snapshots(self) -> SnapshotStore:
        return SnapshotStore(self.out_dir / "snapshots")


@dataclass
class MonthResult:
    month: str
    invoices: list[Invoice]
    created: list[str]
    unchanged: list[str]
    reconciliation: list[ReconciliationRow]
    unattributed: Decimal
    warnings: list[str] = field(default_factory=list)


# A month failing for one of these is reported and skipped; a backfill goes on with the next month.
MONTH_FAILURES = (FinalizedInvoiceChanged, SourceError)


def month_failure(month: Month, err: Exception) -> str:
    """What to tell finance staff when a month could not be invoiced."""
    if isinstance(err, SourceError):
        return (f"{month} is incomplete: {err}. No invoice was finalized from partial data; "
                "run the month again when the source answers.")
    return str(err)


def _identity(fn: Callable) -> Callable:
    return fn


# ---- stages (plain functions, each testable alone) ------------------------------------


def fetch_costs(org: Organization, month: Month, opts: RunOptions) -> IngestedMonth:
    if month_is_open(month) and not opts.draft and not opts.allow_estimated:
        raise InputError(f"{month} has not ended yet, so its cost is incomplete and its invoices are not finalized; "
                         "preview it with --draft, or finalize anyway with --allow-estimated")
    ingested = ingest_month(org, month, opts.snapshots, refresh=opts.refresh)
    if ingested.estimated and not opts.draft and not opts.allow_estimated:
        sources = ", ".join(s.source for s in ingested.sources if s.estimated)
        raise InputError(f"{month}: {sources} say the cost is still estimated, so the month is not finalized; "
                         "rerun when the bill is final, preview with --draft, or finalize anyway with --allow-estimated")
    return ingested


def attribute_costs(org: Organization, ingested: IngestedMonth,
                    usage: MonthUsage) -> tuple[list[AttributedCost], list[ReconciliationRow]]:
    attributed = attribute(org, ingested, usage)
    return attributed, reconcile(ingested, attributed)


def issue_invoices(org: Organization, month: Month, ingested: IngestedMonth, attributed: list[AttributedCost],
                   usage: MonthUsage, opts: RunOptions) -> MonthRecord:
    charges = price_month(org, month, attributed, usage)
    invoices = ledger_mod.build_invoices(org, month, charges, ingested.fingerprint)
    engine = ledger_mod.open_ledger(ledger_mod.ledger_url(org, str(opts.out_dir), opts.ledger_url))
    try:
        inputs = [{"source": s.source, "clusters": list(s.clusters), "paths": list(s.paths),
                   "fingerprint": s.fingerprint, "rows": s.rows, "estimated": s.estimated} for s in ingested.sources]
        return ledger_mod.record_month(engine, org, month, invoices, finalize=not opts.draft, inputs=inputs)
    finally:
        engine.dispose()


def pdf_name(invoice: Invoice) -> str:
    return f"{invoice.number}.pdf" if invoice.number else f"DRAFT-{invoice.party_kind}-{invoice.party_id}.pdf"


def render_invoices(record: MonthRecord, opts: RunOptions) -> dict[tuple[str, str], str]:
    """PDFs for the month: finalized ones once (never re-rendered), drafts every time."""
    from invoices import render_many

    folder = opts.out_dir / record.month / "invoices"
    folder.mkdir(parents=True, exist_ok=True)
    jobs, names = [], {}
    for inv in record.invoices:
        path = folder / pdf_name(inv)
        names[(inv.party_kind, inv.party_id)] = str(path.relative_to(opts.out_dir))
        if inv.status == "draft" or not path.exists():
            jobs.append((document_for(inv), path))
    if not opts.draft:
        for stale in folder.glob("DRAFT-*.pdf"):
            stale.unlink()
    render_many(jobs, workers=opts.workers)
    return names


def write_month_files(record: MonthRecord, attributed: list[AttributedCost], reconciliation: list[ReconciliationRow],
                      pdf_names: dict, opts: RunOptions) -> None:
    folder = opts.out_dir / record.month
    write_invoices_csv(folder / "invoices.csv", record.invoices, pdf_names)
    write_attribution_csv(folder / "attribution.csv", attributed)
    write_reconciliation_csv(folder / "reconciliation.csv", reconciliation)


def write_revenue_report(org: Organization, opts: RunOptions) -> list:
    engine = ledger_mod.open_ledger(ledger_mod.ledger_url(org, str(opts.out_dir), opts.ledger_url))
    try:
        rows = revenue_rows(ledger_mod.all_finalized(engine))
    finally:
        engine.dispose()
    write_revenue_csv(opts.out_dir / "revenue.csv", rows)
    write_revenue_plot(opts.out_dir / "revenue.png", rows, org.name)
    return rows


# ---- the wiring -----------------------------------------------------------------------


def run_month(org: Organization, month: Month, opts: RunOptions, stage: Stage = _identity) -> MonthResult:
    """Ingest, attribute, price, invoice, render and write one month."""
    ingested = stage(fetch_costs)(org, month, opts)
    usage = stage(load_usage)(org, month)
    attributed, reconciliation = stage(attribute_costs)(org, ingested, usage)
    record = stage(issue_invoices)(org, month, ingested, attributed, usage, opts)
    pdf_names = stage(render_invoices)(record, opts)
    stage(write_month_files)(record, attributed, reconciliation, pdf_names, opts)
    unattributed = sum((a.cost for a in attributed if a.allocation == UNATTRIBUTED), ZERO)
    warnings = list(ingested.warnings)
    if unattributed:
        warnings.append(f"{month}: {unattributed.normalize():f} of cost is unattributed; see attribution.csv")
    return MonthResult(str(month), record.invoices, record.created, record.unchanged, reconciliation, unattributed,
                       warnings)
