"""The monthly run, stage by stage: the one place the stages are wired.

`run_month` calls each stage through `stage`, a wrapper that is the identity
here and a Prefect task factory in `flows/` (retries, names, logs), so the CLI
and the scheduled flow run exactly the same steps.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

from billing import ledger as ledger_mod
from billing.attribution import UNATTRIBUTED, AttributedCost, ReconciliationRow, attribute, reconcile
from billing.config import Organization
from billing.closing import (Closed, CloseOptions, PlanOutdated, PreparedMonth, amend_month, close_month,
                             finalize_plan, plan_months, render_plan, void_document)
from billing.errors import BillingError, FinalizedInvoiceChanged, InputError, SourceError
from billing.fileio import mirror_outputs
from billing.ingest import IngestedMonth, ingest_month
from billing.ledger import Correction, Invoice, MonthLocked
from billing.money import ZERO
from billing.months import Month
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
    issue_date: dt.date | None = None    # the date new documents are issued (default: today)
    issue_on_closing_day: bool = False   # ... or the day each month closed (backfilling history)
    today: dt.date | None = None         # "today", for tests (default: the date in UTC)
    actor: str | None = None             # who does it, for the event log (default: the OS user)
    lock_wait: float = 120.0             # seconds to wait for a month another run holds
    out_url: str | None = None           # an object store the outputs are copied to; out_dir is then its cache

    @property
    def snapshots(self) -> SnapshotStore:
        self.activate()
        return SnapshotStore(self.out_dir / "snapshots")

    def activate(self) -> None:
        """Mirror the output folder to its object store in this process (see billing.storage)."""
        if self.out_url:
            mirror_outputs(self.out_dir, self.out_url)


@dataclass
class MonthResult:
    month: str
    invoices: list[Invoice]
    created: list[str]
    unchanged: list[str]
    reconciliation: list[ReconciliationRow]
    unattributed: Decimal
    warnings: list[str] = field(default_factory=list)
    draft: bool = False
    restated: list[str] = field(default_factory=list)   # how the data changed since finalization (no money)


# A month failing for one of these is reported and skipped; a backfill goes on with the next month.
MONTH_FAILURES = (FinalizedInvoiceChanged, SourceError, MonthLocked)


def month_failure(month: Month, err: Exception) -> str:
    """What to tell finance staff when a month could not be invoiced."""
    if isinstance(err, SourceError):
        return (f"{month} is incomplete: {err}. No invoice was finalized from partial data; "
                "run the month again when the source answers.")
    return str(err)


def run_inline(fn: Callable) -> Callable:
    """The stage wrapper of a plain run: call the function here (the flows wrap stages as Prefect tasks)."""
    return fn


# ---- stages (plain functions, each testable alone) ------------------------------------


def fetch_costs(org: Organization, month: Month, opts: RunOptions, draft: bool) -> IngestedMonth:
    """The month's cost from every source; a finalization refuses estimated figures and untagged clusters."""
    if month_is_open(month, opts.today) and not draft and not opts.allow_estimated:
        raise InputError(f"{month} has not ended yet, so its cost is incomplete and its invoices are not finalized; "
                         "preview it with --draft, or finalize anyway with --allow-estimated")
    ingested = ingest_month(org, month, opts.snapshots, refresh=opts.refresh)
    if ingested.estimated and not draft and not opts.allow_estimated:
        sources = ", ".join(s.source for s in ingested.sources if s.estimated)
        raise InputError(f"{month}: {sources} say the cost is still estimated, so the month is not finalized; "
                         "rerun when the bill is final, preview with --draft, or finalize anyway with --allow-estimated")
    if not draft:
        ingested.refuse_untagged()
    return ingested


def attribute_costs(org: Organization, ingested: IngestedMonth,
                    usage: MonthUsage) -> tuple[list[AttributedCost], list[ReconciliationRow]]:
    """Attribute every cost row and reconcile; a correction of an earlier month is split by that month's usage."""
    corrected = {m: load_usage(org, Month.parse(m)) for m in ingested.corrected_months if m != str(ingested.month)}
    attributed = attribute(org, ingested, usage, corrected)
    return attributed, reconcile(ingested, attributed)


def write_revenue_report(org: Organization, opts: RunOptions, basis: str = "issued") -> list:
    """revenue.csv (by the month documents were issued), revenue-by-service-month.csv, and the plot of
    monthly revenue on `basis`; returns the rows plotted."""
    opts.activate()
    engine = ledger_mod.open_ledger(ledger_mod.ledger_url(org, str(opts.out_dir), opts.ledger_url))
    try:
        documents = ledger_mod.all_finalized(engine)
    finally:
        engine.dispose()
    by_issue, by_service = revenue_rows(documents, "issued"), revenue_rows(documents, "service")
    write_revenue_csv(opts.out_dir / "revenue.csv", by_issue)
    write_revenue_csv(opts.out_dir / "revenue-by-service-month.csv", by_service)
    rows = by_issue if basis == "issued" else by_service
    write_revenue_plot(opts.out_dir / "revenue.png", rows, org.name, basis)
    return rows


# ---- the wiring -----------------------------------------------------------------------


def close_options(org: Organization, month: Month, opts: RunOptions) -> tuple[CloseOptions, list[str]]:
    """What closing this month needs: a month that has not closed yet gives drafts, and says when it closes."""
    today = opts.today or org.today()
    closes = org.closing_day(month)
    draft, notes = opts.draft, []
    if today < closes and not opts.draft and not opts.allow_estimated:
        draft = True
        notes.append(f"{month} closes on {closes} ({(closes - month.end).days} days after it ends, so late cloud "
                     "data lands first); until then its invoices are drafts (finalize anyway with "
                     "--allow-estimated)")
    if opts.issue_date is not None:
        issue = opts.issue_date
    elif opts.issue_on_closing_day:
        issue = closes
    else:
        issue = today
    if not draft and issue < month.end:
        raise InputError(f"--issue-date: {issue} is before {month} ends; an invoice is issued after its period")
    return CloseOptions(opts.out_dir, opts.ledger_url, opts.workers, draft, issue, opts.actor, opts.out_url), notes


@contextlib.contextmanager
def month_guard(org: Organization, month: Month | str, opts: RunOptions, command: str) -> Iterator[dict]:
    """Hold the organization's month for the run (one run per month at a time, across processes and
    workers) and record how the run ended (for `billing status`). The block fills the dict it gets with
    `outcome` and any details."""
    opts.activate()
    engine = ledger_mod.open_ledger(ledger_mod.ledger_url(org, str(opts.out_dir), opts.ledger_url))
    started = dt.datetime.now(dt.timezone.utc)
    report: dict = {"outcome": "failed", "message": ""}
    try:
        with ledger_mod.month_lock(engine, org.org_id, str(month), wait=opts.lock_wait, actor=opts.actor):
            try:
                yield report
            except BaseException as err:
                report.update(run_outcome(None, err))
                raise
            finally:
                outcome, message = report.pop("outcome"), report.pop("message")
                ledger_mod.record_run(engine, org.org_id, str(month), command=command, outcome=outcome,
                                      started_at=started, actor=opts.actor, message=message, **report)
    finally:
        engine.dispose()


def totals_by_currency(documents: list[Invoice]) -> dict[str, str]:
    """What the month's documents in force bill, per currency."""
    totals: dict[str, Decimal] = {}
    for doc in documents:
        if doc.is_in_force or doc.status == "draft":
            totals[doc.currency] = totals.get(doc.currency, ZERO) + doc.total
    return {c: str(t) for c, t in sorted(totals.items())}


def run_month(org: Organization, month: Month, opts: RunOptions, stage: Stage = run_inline) -> MonthResult:
    """Ingest, attribute, price, then finalize with every document rendered before the commit."""
    closing, notes = close_options(org, month, opts)
    with month_guard(org, month, opts, "run") as report:
        result = _run_month(org, month, opts, closing, notes, stage)
        report.update(run_outcome(result, None))
    return result


def prepare_month(org: Organization, month: Month, opts: RunOptions, draft: bool) -> PreparedMonth:
    """The month's data, attributed: what can be computed for many months at once, before any number."""
    opts.activate()
    ingested = fetch_costs(org, month, opts, draft)
    usage = load_usage(org, month)
    attributed, reconciliation = attribute_costs(org, ingested, usage)
    return PreparedMonth(month, ingested, attributed, reconciliation, usage)


def _run_month(org: Organization, month: Month, opts: RunOptions, closing: CloseOptions, notes: list[str],
               stage: Stage) -> MonthResult:
    ingested = stage(fetch_costs)(org, month, opts, closing.draft)
    usage = stage(load_usage)(org, month)
    attributed, reconciliation = stage(attribute_costs)(org, ingested, usage)
    closed = stage(close_month)(org, month, ingested, attributed, reconciliation, usage, closing)
    return month_result(PreparedMonth(month, ingested, attributed, reconciliation, usage), closed, closing, notes)


def month_result(prepared: PreparedMonth, closed: Closed, closing: CloseOptions, notes: list[str]) -> MonthResult:
    """What a month's run did, and the warnings finance staff should read."""
    month, ingested, record, restatement = prepared.month, prepared.ingested, closed.record, closed.restatement
    unattributed = sum((a.cost for a in prepared.attributed if a.allocation == UNATTRIBUTED), ZERO)
    warnings = notes + list(ingested.warnings) + closed.warnings + [
        f"{problem} (this draft splits that cost as the cluster's overhead)" for problem in ingested.untagged]
    if unattributed:
        warnings.append(f"{month}: {unattributed.normalize():f} of cost is unattributed; see attribution.csv")
    if restatement is not None:
        warnings.append(f"{month}: the data changed since the month was finalized, but no invoice changes to the "
                        "cent; the finalized files are kept and the new figures are in "
                        f"{month}/attribution.restated.csv and reconciliation.restated.csv:")
        warnings += [f"  {line}" for line in restatement.describe()]
    return MonthResult(str(month), record.invoices, record.created, record.unchanged, prepared.reconciliation,
                       unattributed, warnings, draft=closing.draft,
                       restated=restatement.describe() if restatement else [])


def run_outcome(result: MonthResult | None, err: BaseException | None) -> dict:
    """How a month's run ended, for `billing status`."""
    if result is not None:
        return {"outcome": "draft" if result.draft else ("restated" if result.restated else "finalized"),
                "message": "", "documents": len(result.invoices), "created": len(result.created),
                "totals": totals_by_currency(result.invoices), "unattributed": str(result.unattributed),
                "restated": result.restated}
    if isinstance(err, SourceError):
        return {"outcome": "incomplete", "message": str(err)}
    if isinstance(err, FinalizedInvoiceChanged):
        return {"outcome": "changed", "message": err.changes[0] if err.changes else str(err), "changes": err.changes}
    return {"outcome": "failed", "message": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}


Submit = Callable[..., Any]   # submit(fn, *args) -> a future with .result(): runs fn elsewhere (a Dask worker)


def backfill_in_parallel(org: Organization, months: list[Month], opts: RunOptions,
                         submit: Submit) -> Iterator[tuple[Month, MonthResult | None, BaseException | None]]:
    """Compute in parallel, finalize in order.

    Every month is prepared (ingest, attribution) and its documents rendered
    through `submit` (e.g. as tasks on a Dask cluster), while the months are
    finalized here one after the other, in month order, so numbers follow
    time. The numbers are planned for all months at once; each month's
    commit checks the ledger still gives the numbers its PDFs show, and a
    month whose plan went stale (another run took numbers, an earlier month
    failed) is planned, rendered and finalized again on its own. Yields each
    month's result (or its error) in month order.
    """
    opts.activate()
    engine = ledger_mod.open_ledger(ledger_mod.ledger_url(org, str(opts.out_dir), opts.ledger_url))
    started = dt.datetime.now(dt.timezone.utc)
    try:
        with contextlib.ExitStack() as locks:
            for month in months:
                locks.enter_context(ledger_mod.month_lock(engine, org.org_id, str(month), wait=opts.lock_wait,
                                                          actor=opts.actor))
            errors: dict[Month, BaseException] = {}
            closings: dict[Month, tuple[CloseOptions, list[str]]] = {}
            for month in months:
                try:
                    closings[month] = close_options(org, month, opts)
                except InputError as err:
                    errors[month] = err
            futures = {m: submit(prepare_month, org, m, opts, c[0].draft) for m, c in closings.items()}
            prepared: dict[Month, PreparedMonth] = {}
            for month, future in futures.items():
                try:
                    prepared[month] = future.result()
                except Exception as err:  # noqa: BLE001 - reported as that month's failure
                    errors[month] = err
            ordered = [m for m in months if m in prepared]
            pending = bool(ordered) and any(a.applied_to is None for a in ledger_mod.carried_adjustments(
                engine, ordered[-1].next(), pending=True))
            plans = dict(zip(ordered, plan_months(org, [(prepared[m], closings[m][0]) for m in ordered]))) \
                if ordered and not pending else {}
            renders = {m: submit(render_plan, p, closings[m][0], 1) for m, p in plans.items()
                       if not isinstance(p, BillingError)}
            for month in months:
                result, err = None, errors.get(month)
                if err is None:
                    try:
                        result = _finalize_in_order(org, month, prepared[month], plans.get(month),
                                                    renders.get(month), *closings[month])
                    except Exception as failure:  # noqa: BLE001 - reported as that month's failure
                        err = failure
                ledger_mod.record_run(engine, org.org_id, str(month), command="run", started_at=started,
                                      actor=opts.actor, **run_outcome(result, err))
                yield month, result, err
    finally:
        engine.dispose()


def _finalize_in_order(org: Organization, month: Month, prepared: PreparedMonth, plan, render,
                       closing: CloseOptions, notes: list[str]) -> MonthResult:
    if isinstance(plan, BillingError):
        raise plan
    if plan is not None:
        staged = render.result()
        try:
            return month_result(prepared, finalize_plan(org, plan, staged, closing), closing, notes)
        except PlanOutdated:
            pass   # an earlier month failed or another run took numbers: this month on its own, as usual
    p = prepared
    return month_result(p, close_month(org, month, p.ingested, p.attributed, p.reconciliation, p.usage, closing),
                        closing, notes)


@dataclass
class AmendResult:
    month: str
    correction: Correction
    warnings: list[str] = field(default_factory=list)


def amend(org: Organization, month: Month, opts: RunOptions, *, reason: str, policy: str = "reissue",
          stage: Stage = run_inline) -> AmendResult:
    """Recompute a finalized month from its data today and correct its documents (credit notes and
    replacements, or adjustments on the next invoice)."""
    closing, notes = close_options(org, month, replace(opts, draft=False, allow_estimated=True))
    with month_guard(org, month, opts, "amend") as report:
        ingested = stage(fetch_costs)(org, month, opts, False)
        usage = stage(load_usage)(org, month)
        attributed, reconciliation = stage(attribute_costs)(org, ingested, usage)
        closed = stage(amend_month)(org, month, ingested, attributed, reconciliation, usage, closing, reason=reason,
                                    policy=policy)
        report.update(outcome="amended" if closed.record.changes else "finalized", message=reason,
                      created=[d.number for d in closed.record.created], policy=policy,
                      totals=totals_by_currency(closed.record.invoices))
    return AmendResult(str(month), closed.record, notes + closed.warnings)


def void(org: Organization, number: str, opts: RunOptions, *, reason: str) -> Correction:
    today = opts.today or org.today()
    closing = CloseOptions(opts.out_dir, opts.ledger_url, opts.workers, False, opts.issue_date or today, opts.actor,
                           opts.out_url)
    engine = ledger_mod.open_ledger(ledger_mod.ledger_url(org, str(opts.out_dir), opts.ledger_url))
    try:
        found = ledger_mod.document(engine, number)
    finally:
        engine.dispose()
    if found is None:
        raise InputError(f"{number}: no such document in the ledger")
    with month_guard(org, found.month, opts, "void") as report:
        correction = void_document(org, number, closing, reason=reason)
        report.update(outcome="voided", message=f"{number}: {reason}",
                      created=[d.number for d in correction.created], totals=totals_by_currency(correction.invoices))
    return correction
