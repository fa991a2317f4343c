"""`monthly_invoicing(month)` and `backfill(start, end)` as Prefect flows.

The wiring is `billing.pipeline.run_month`; here each stage becomes a task
with a name and, for fetching cost data, retries on transient source errors
(never on bad input). Results are not cached: cloud costs get restated, and
the ledger already makes reruns safe.

Both flows notify as `billing run` does (`billing.notify`): a month's
summary, a failed or incomplete month, one summary per backfill; their
on_failure / on_crashed hooks notify whatever else stops a run.

Each month leaves its summary and documents as artifacts (`flows.artifacts`).
`billing serve` (`flows.deployments`) and prefect.yaml schedule them (see README).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Callable

from prefect import flow, get_run_logger, task
from prefect import context as flow_run_context
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.logging.loggers import flow_run_logger

from billing.approval import finalize_proposal, propose_month, record_decision
from billing.config import default_organization_path, load_organization
from billing.errors import BillingError, SourceError
from billing.months import Month, month_range
from billing.sending import SendOptions, send_month
from billing.storage import cache_dir, is_url
from billing.notify import Notifier, already_notified
from billing.pipeline import (MONTH_FAILURES, RunOptions, amend, backfill_in_parallel, month_failure, run_month,
                              write_revenue_report)
from flows.artifacts import publish_month

RETRIED_STAGES = {"fetch_costs": 3}
# Called in-process after each month of a backfill with (month, MonthResult or None, failure message or None);
# the CLI uses it to show progress. Empty when the flow runs from a deployment.
MONTH_LISTENERS: list[Callable[[str, Any, str | None], None]] = []


def _transient_only(_task, _task_run, state) -> bool:
    """Retry a failed stage only when a source reported a transient fault."""
    exc = getattr(state, "data", None)
    return isinstance(exc, SourceError) and exc.transient


def as_task(fn: Callable) -> Callable:
    retries = RETRIED_STAGES.get(fn.__name__, 0)
    return task(fn, name=fn.__name__, retries=retries, retry_delay_seconds=[10, 30, 90][:retries] or 0,
                retry_condition_fn=_transient_only if retries else None, cache_policy=NO_CACHE,
                persist_result=False)


def _options(out_dir: str, draft: bool, refresh: bool, allow_estimated: bool, ledger_url: str | None,
             issue_date: str | None = None, actor: str | None = None) -> RunOptions:
    """Run options from flow parameters (plain strings, as a deployment passes them). `out_dir` may be an
    object-store URL (s3://, gs://, az://): the outputs are then copied there from a local cache."""
    closing_day = issue_date == "closing-day"
    out_url = out_dir.rstrip("/") if is_url(out_dir) else None
    return RunOptions(out_dir=cache_dir(out_dir) if out_url else Path(out_dir), out_url=out_url, draft=draft, refresh=refresh, allow_estimated=allow_estimated,
                      ledger_url=ledger_url or None, actor=actor or None, issue_on_closing_day=closing_day,
                      issue_date=dt.date.fromisoformat(issue_date) if issue_date and not closing_day else None)


def _notify_stopped_run(flow_, flow_run, state) -> None:
    """on_failure / on_crashed: tell people what stopped the run, unless a month already notified it.

    This catches what the flow body cannot: a crash (the process killed, the
    infrastructure gone) and failures outside a month (the revenue report).
    """
    logger = flow_run_logger(flow_run, flow_)
    try:
        _notify_stopped(flow_run, state, logger)
    except Exception as err:  # noqa: BLE001 - a hook that raises would hide the run's own failure
        logger.warning(f"notification not sent: {type(err).__name__}: {err}")


def _notify_stopped(flow_run, state, logger) -> None:
    params = flow_run.parameters
    err = state.result(raise_on_failure=False) if state.is_failed() else None
    if not params.get("notify", True) or already_notified(err) or flow_run.id in NOTIFIED_RUNS:
        return
    try:
        org = load_organization(params.get("org_path") or default_organization_path())
    except Exception as load_err:  # noqa: BLE001 - nothing to send with, nor to whom
        logger.warning(f"no notification sent: the configuration could not be read ({load_err})")
        return
    notifier = Notifier(org, params.get("out_dir") or "out", warn=logger.warning)
    if isinstance(err, Exception) and params.get("month"):
        notifier.month_error(params["month"], err)
        return
    what = params.get("month") or f"the backfill {params.get('start')} to {params.get('end')}"
    why = f"{type(err).__name__}: {err}" if isinstance(err, BaseException) else f"{state.name}: {state.message}"
    notifier.month_failed(what, f"{what} stopped (flow run {flow_run.name}): {why}")


@flow(name="monthly-invoicing", log_prints=True, on_failure=[_notify_stopped_run], on_crashed=[_notify_stopped_run])
def monthly_invoicing(month: str | None = None, org_path: str = "", out_dir: str = "out", draft: bool = False,
                      refresh: bool = False, allow_estimated: bool = False, ledger_url: str | None = None,
                      issue_date: str | None = None, actor: str | None = None, notify: bool = True):
    """Invoice one month (by default the last one that has closed, in the organization's time zone):
    ingest, attribute, price, finalize, render, write outputs; then notify. With `approval: required`, the
    month is drafted first and the run pauses for a person's MonthApproval; approved, it is finalized and its
    documents e-mailed (see README, "Approving a month")."""
    org = load_organization(org_path or default_organization_path())
    month = month or str(org.last_closed_month())
    notifier = Notifier(org, out_dir, warn=get_run_logger().warning, enabled=notify)
    opts = _options(out_dir, draft, refresh, allow_estimated, ledger_url, issue_date, actor)
    if org.approval.required and not draft:
        return _invoice_with_approval(org, month, opts, notifier, out_dir)
    with notifier.run([month]) as report, report.month(month):
        result = run_month(org, Month.parse(month), opts, stage=as_task)
    report.succeeded(result)
    publish_month(org, out_dir, month, result)
    return result


class MonthApproval(RunInput):
    """The answer the monthly flow waits for when the organization approves each month (`approval: required`)."""

    approve: bool
    reason: str = ""
    approver: str = ""    # who answers, for the ledger (default: the run's actor)


APPROVAL_POLL_SECONDS = 5


def _invoice_with_approval(org, month: str, opts: RunOptions, notifier: Notifier, out_dir: str):
    """Draft the month, wait for a person's answer, then finalize and send it, or record why not."""
    logger = get_run_logger()
    with notifier.run([month]) as report, report.month(month):
        proposal = propose_month(org, Month.parse(month), opts, stage=as_task)
    publish_month(org, out_dir, month, proposal.review)
    if not proposal.pending:   # not closed yet (drafts), or already finalized: nothing to approve
        report.succeeded(proposal.review)
        return proposal.review
    run = flow_run_context.get_run_context().flow_run
    hours = org.approval.timeout_hours
    notifier.approval_requested(proposal.review, f"{run.name} ({run.id})", hours)
    try:
        answer = pause_flow_run(wait_for_input=MonthApproval, timeout=org.approval.timeout_seconds,
                                poll_interval=APPROVAL_POLL_SECONDS, key=f"approve-{month}")
    except FlowPauseTimeout:
        why = (f"{month} was not approved within {hours:g} hours, so nothing was finalized or sent (the drafts "
               "are kept); run the month again to ask again")
        record_decision(org, proposal, opts, outcome="expired", message=why)
        notifier.approval_refused(month, why, expired=True)
        raise _notified(BillingError(why)) from None
    who = answer.approver.strip() or opts.actor
    reason = " ".join(answer.reason.split())
    if not answer.approve:
        reason = reason or "(no reason given)"
        record_decision(org, proposal, opts, outcome="rejected", message=reason, actor=who)
        notifier.approval_refused(month, reason, who)
        logger.warning(f"{month} rejected{' by ' + who if who else ''}: {reason}; nothing finalized")
        return proposal.review
    try:
        with notifier.run([month]) as report, report.month(month):   # a failure here is notified once
            result = as_task(finalize_proposal)(org, proposal, opts, approver=who, reason=reason)
    except Exception:
        NOTIFIED_RUNS.add(run.id)
        raise
    publish_month(org, out_dir, month, result)
    sent = as_task(_send)(org, month, opts) if org.smtp is not None else None
    notifier.month_approved(result, who, reason, sent)
    if sent is not None and sent.failed:
        raise _notified(BillingError(f"{month} is finalized, but {sent.summary()}: fix what failed, then "
                                     f"billing send --month {month}"))
    return result


def _send(org, month: str, opts: RunOptions):
    """E-mail the month's documents (billing send), each once."""
    logger = get_run_logger()
    report = send_month(org, month, SendOptions(out_dir=opts.out_dir, ledger_url=opts.ledger_url,
                                                out_url=opts.out_url, actor=opts.actor, lock_wait=opts.lock_wait))
    for outcome in report.outcomes:
        say = logger.error if outcome.result == "failed" else logger.info
        say(f"{outcome.result} {outcome.number} {outcome.text}")
    logger.info(report.summary())
    return report


# Flow runs of this process whose failure was notified already: the on_failure hook sends nothing more. (The
# exception a hook gets back from the state is not always the object raised, e.g. after a pause.)
NOTIFIED_RUNS: set = set()


def _notified(err: BaseException) -> BaseException:
    """An error whose notification was sent already (the flow's on_failure hook then sends none)."""
    err._billing_notified = True   # type: ignore[attr-defined]
    NOTIFIED_RUNS.add(flow_run_context.get_run_context().flow_run.id)
    return err


@flow(name="amend-month", log_prints=True)
def amend_month_flow(month: str, reason: str, policy: str = "reissue", org_path: str = "", out_dir: str = "out",
                     refresh: bool = False, ledger_url: str | None = None, issue_date: str | None = None,
                     actor: str | None = None):
    """Recompute a finalized month and correct its documents (see `billing amend`)."""
    org = load_organization(org_path or default_organization_path())
    return amend(org, Month.parse(month), _options(out_dir, False, refresh, False, ledger_url, issue_date, actor),
                 reason=reason, policy=policy, stage=as_task)


@flow(name="backfill", log_prints=True, on_failure=[_notify_stopped_run], on_crashed=[_notify_stopped_run])
def backfill(start: str, end: str, org_path: str = "", out_dir: str = "out", draft: bool = False,
             refresh: bool = False, allow_estimated: bool = False, ledger_url: str | None = None,
             write_report: bool = True, issue_date: str | None = None, actor: str | None = None,
             notify: bool = True, parallel: int = 1, dask_address: str | None = None) -> dict[str, Any]:
    """Invoice every month from start to end (oldest first), then the revenue report.

    A month whose finalized invoices would change, or whose source failed, is
    reported (and notified) and skipped; the other months still run. One
    summary is notified at the end (for a single month, its own message).
    With `parallel` > 1 (a local Dask cluster of that many workers) or a
    `dask_address` (an existing cluster), the months are prepared and rendered
    in parallel on the cluster and finalized here in month order.
    """
    org = load_organization(org_path or default_organization_path())
    opts = _options(out_dir, draft, refresh, allow_estimated, ledger_url, issue_date, actor)
    months = month_range(Month.parse(start), Month.parse(end))
    notifier = Notifier(org, out_dir, warn=get_run_logger().warning, enabled=notify)
    results, failures = [], []
    if parallel > 1 or dask_address:
        outcomes = _on_dask(org, months, opts, parallel, dask_address)
    else:
        outcomes = ((month, lambda month=month: run_month(org, month, opts, stage=as_task)) for month in months)
    with notifier.run(months) as report:
        for month, run in outcomes:
            result, failure = None, None
            try:
                with report.month(month):
                    result = run()
                results.append(result)
                report.succeeded(result)
            except MONTH_FAILURES as err:
                failure = month_failure(month, err)
                failures.append(failure)
            publish_month(org, out_dir, month, result, failure)
            for listener in MONTH_LISTENERS:
                listener(str(month), result, failure)
    if write_report and not draft:
        as_task(write_revenue_report)(org, opts)
    return {"months": results, "failures": failures}


def dask_runner(parallel: int, address: str | None):
    """prefect-dask's task runner: join an existing Dask cluster, or start a local one of `parallel`
    single-threaded worker processes (WeasyPrint and DuckDB each use a core)."""
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": parallel, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})


def _on_dask(org, months, opts, parallel: int, address: str | None):
    """Each month's (month, run) in month order, computed by the parallel backfill on a Dask cluster."""
    flow_ = _parallel_backfill.with_options(task_runner=dask_runner(parallel, address))
    for month, result, err in flow_(org, months, opts):
        def run(result=result, err=err):
            if err is not None:
                raise err
            return result
        yield month, run


@flow(name="backfill-parallel", log_prints=True)
def _parallel_backfill(org, months, opts) -> list:
    """Prepare and render the months as tasks on the flow's Dask task runner; finalize them in order."""
    def submit(fn, *args):
        return task(fn, name=fn.__name__, cache_policy=NO_CACHE, persist_result=False).submit(*args)

    return list(backfill_in_parallel(org, months, opts, submit))
