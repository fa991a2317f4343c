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
from billing.evidence import MonthEvidence, Restatement, compare, evidence_of
from billing.fileio import StagedFiles
from billing.ingest import IngestedMonth, ingest_month
from billing.ledger import Evidence, Invoice, MonthRecord
from billing.money import ZERO
from billing.months import Month
from billing.outputs import write_attribution_csv, write_invoices_csv, write_reconciliation_csv
from billing.pricing import price_month
from billing.reports import revenue_rows, write_revenue_csv, write_revenue_plot
from billing.sources import SnapshotStore
from billing.sources.base import month_is_open
from billing.usage import MonthUsage, load_usage
from invoices import RenderError, render_many

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
    if not opts.draft:
        ingested.refuse_untagged()
    return ingested


def attribute_costs(org: Organization, ingested: IngestedMonth,
                    usage: MonthUsage) -> tuple[list[AttributedCost], list[ReconciliationRow]]:
    attributed = attribute(org, ingested, usage)
    return attributed, reconcile(ingested, attributed)


def pdf_name(invoice: Invoice) -> str:
    return f"{invoice.number}.pdf" if invoice.number else f"DRAFT-{invoice.party_kind}-{invoice.party_id}.pdf"


RESTATED = {"attribution.csv": "attribution.restated.csv", "reconciliation.csv": "reconciliation.restated.csv"}


def close_month(org: Organization, month: Month, ingested: IngestedMonth, attributed: list[AttributedCost],
                reconciliation: list[ReconciliationRow], usage: MonthUsage,
                opts: RunOptions) -> tuple[MonthRecord, Restatement | None]:
    """Price the month, then finalize it (or keep drafts) and produce every document before committing.

    Inside the ledger transaction that holds the new invoice numbers, every
    PDF and the month's CSVs are rendered to a staging folder; only when all
    of them exist is the transaction committed and the files moved into
    place. If anything fails, nothing is committed and no number is taken.
    A month already finalized keeps its documents and supporting files; if
    its data changed since, the new figures go beside them (`*.restated.csv`).
    """
    charges = price_month(org, month, attributed, usage)
    invoices = ledger_mod.build_invoices(org, month, charges, ingested.fingerprint)
    evidence = evidence_of(ingested, attributed, reconciliation)
    engine = ledger_mod.open_ledger(ledger_mod.ledger_url(org, str(opts.out_dir), opts.ledger_url))
    try:
        restatement = check_restatement(engine, month, invoices, evidence, opts)
        inputs = [{"source": s.source, "clusters": list(s.clusters), "paths": list(s.paths),
                   "fingerprint": s.fingerprint, "rows": s.rows, "estimated": s.estimated} for s in ingested.sources]
        staged = StagedFiles(opts.out_dir, str(month))
        try:
            with ledger_mod.recording_month(engine, org, month, invoices, finalize=not opts.draft, inputs=inputs,
                                            evidence=Evidence(evidence.digest, evidence.to_json())) as record:
                try:
                    stage_month_files(staged, record, evidence, opts)
                except RenderError as err:
                    raise RenderError(f"{month}: the documents could not be produced, so nothing was finalized "
                                      f"and no number was taken: {err}") from err
            staged.publish()
        finally:
            staged.discard()
    finally:
        engine.dispose()
    if not opts.draft:
        for stale in (opts.out_dir / str(month) / "invoices").glob("DRAFT-*.pdf"):
            stale.unlink()
    return record, restatement


def check_restatement(engine, month: Month, invoices: list[Invoice], evidence: MonthEvidence,
                      opts: RunOptions) -> Restatement | None:
    """For a finalized month: how today's data differs from the data it was invoiced from.

    New figures are written beside the finalized month's files (never over
    them); if any invoice would change, the run stops here with the changes.
    """
    finalized, stored = ledger_mod.finalized_month(engine, str(month))
    if not finalized:
        return None
    restatement = compare(str(month), MonthEvidence.from_json(stored.body) if stored else None, evidence, finalized,
                          invoices, ledger_mod.invoice_changes(finalized, invoices))
    folder = opts.out_dir / str(month)
    if restatement.data_changed:
        write_attribution_csv(folder / RESTATED["attribution.csv"], evidence.attribution)
        write_reconciliation_csv(folder / RESTATED["reconciliation.csv"], evidence.reconciliation)
    elif not restatement.data_changed:
        for name in RESTATED.values():
            (folder / name).unlink(missing_ok=True)
    if restatement.invoice_changes:
        raise FinalizedInvoiceChanged(str(month), restatement.invoice_changes, restatement.describe())
    return restatement if restatement.data_changed else None


def stage_month_files(staged: StagedFiles, record: MonthRecord, evidence: MonthEvidence, opts: RunOptions) -> None:
    """Every document of the month into the staging folder: PDFs not yet rendered, invoices.csv, and the
    supporting files (for a finalized month: those of the data it was invoiced from, when known)."""
    folder = opts.out_dir / record.month
    jobs, names = [], {}
    for inv in record.invoices:
        final = folder / "invoices" / pdf_name(inv)
        names[(inv.party_kind, inv.party_id)] = str(final.relative_to(opts.out_dir))
        if inv.status == "draft" or not final.exists():
            jobs.append((document_for(inv), staged.path(final)))
    render_many(jobs, workers=opts.workers)
    write_invoices_csv(staged.path(folder / "invoices.csv"), record.invoices, names)
    if record.evidence is not None:
        evidence = MonthEvidence.from_json(record.evidence.body)
    elif any(inv.status == "finalized" for inv in record.invoices):
        return  # finalized by an earlier version from data that has since changed: keep the files it wrote
    write_attribution_csv(staged.path(folder / "attribution.csv"), evidence.attribution)
    write_reconciliation_csv(staged.path(folder / "reconciliation.csv"), evidence.reconciliation)


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
    """Ingest, attribute, price, then finalize with every document rendered before the commit."""
    ingested = stage(fetch_costs)(org, month, opts)
    usage = stage(load_usage)(org, month)
    attributed, reconciliation = stage(attribute_costs)(org, ingested, usage)
    record, restatement = stage(close_month)(org, month, ingested, attributed, reconciliation, usage, opts)
    unattributed = sum((a.cost for a in attributed if a.allocation == UNATTRIBUTED), ZERO)
    warnings = list(ingested.warnings) + [f"{problem} (this draft splits that cost as the cluster's overhead)"
                                          for problem in ingested.untagged]
    if unattributed:
        warnings.append(f"{month}: {unattributed.normalize():f} of cost is unattributed; see attribution.csv")
    if restatement is not None:
        warnings.append(f"{month}: the data changed since the month was finalized, but no invoice changes to the "
                        "cent; the finalized files are kept and the new figures are in "
                        f"{month}/attribution.restated.csv and reconciliation.restated.csv:")
        warnings += [f"  {line}" for line in restatement.describe()]
    return MonthResult(str(month), record.invoices, record.created, record.unchanged, reconciliation, unattributed,
                       warnings)
