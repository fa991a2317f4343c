"""billing run / backfill: invoice one month or a range of months, oldest first."""
from __future__ import annotations

import argparse
import sys

from billing.cli.common import (common_options, document_options, load_org, months_of, preflight, progress_bar,
                                run_options, say, worker_count)


def add_parsers(sub) -> None:
    run_opts = argparse.ArgumentParser(add_help=False)
    run_opts.add_argument("--draft", action="store_true", help="price and render without finalizing (PDFs marked DRAFT)")
    run_opts.add_argument("--refresh", action="store_true", help="re-query live cloud sources instead of their snapshots")
    run_opts.add_argument("--allow-estimated", action="store_true",
                          help="finalize even if the month has not closed or a source says figures are estimated")
    run_opts.add_argument("--prefect", action="store_true", help="run through the Prefect flow (records runs in Prefect)")
    run_opts.add_argument("--no-notify", action="store_true",
                          help="send no notification (e-mail, webhook) for this run, whatever the configuration says")
    parents = [common_options(), document_options(), run_opts]
    run = sub.add_parser("run", parents=parents, help="run the monthly job for one month")
    run.add_argument("--month", required=True, help="YYYY-MM")
    run.set_defaults(handler=cmd_run)
    back = sub.add_parser("backfill", parents=parents, help="run a range of months, oldest first")
    back.add_argument("--from", dest="start", required=True, help="first month, YYYY-MM")
    back.add_argument("--to", dest="end", required=True, help="last month, YYYY-MM")
    back.add_argument("--parallel", type=worker_count, default=1, metavar="N",
                      help="prepare and render the months in parallel on a local Dask cluster of N workers "
                           "(through the Prefect flow); they are still finalized in month order")
    back.add_argument("--dask-address", default=None, metavar="ADDRESS",
                      help="join an existing Dask cluster (e.g. tcp://scheduler:8786) instead of a local one")
    back.set_defaults(handler=cmd_backfill)


def _run_months(args, months) -> int:
    from billing.notify import Notifier
    from billing.pipeline import MONTH_FAILURES, month_failure, run_month

    org, opts = load_org(args), run_options(args)
    if args.prefect or getattr(args, "parallel", 1) > 1 or getattr(args, "dask_address", None):
        return _run_months_in_prefect(args, months, opts)
    notifier = Notifier(org, opts.out_dir, warn=_warn, enabled=not args.no_notify)
    failures = []
    with progress_bar() as progress, notifier.run(months) as report:
        task = progress.add_task("Invoicing", total=len(months)) if progress else None
        for month in months:
            if progress:
                progress.update(task, description=f"Invoicing {month}")
            try:
                with report.month(month):
                    result = run_month(org, month, opts)
                say(result, opts.draft)
                report.succeeded(result)
            except MONTH_FAILURES as err:
                # One month failing must not stop a backfill; it is reported and the run exits non-zero.
                failures.append(month_failure(month, err))
                print(f"error: {failures[-1]}", file=sys.stderr)
            if progress:
                progress.advance(task)
    if failures and len(months) > 1:
        print(f"{len(failures)} of {len(months)} month(s) failed; nothing was changed for them.", file=sys.stderr)
    return 1 if failures else 0


def _warn(text: str) -> None:
    """A notification that could not be sent: a warning, never a change to the exit code."""
    sys.stderr.write(f"warning: {text}\n")
    sys.stderr.flush()


def _run_months_in_prefect(args, months, opts) -> int:
    """The same months through the Prefect backfill flow, reporting each month as it finishes."""
    print(f"Starting the Prefect flow for {months[0]} to {months[-1]} (a temporary Prefect server may take "
          "a few seconds to start)...", file=sys.stderr, flush=True)
    from flows.monthly import MONTH_LISTENERS, backfill as backfill_flow

    def report(month, result, failure):
        if failure:
            sys.stderr.write(f"error: {failure}\n")
        else:
            say(result, opts.draft)

    MONTH_LISTENERS.append(report)
    try:
        issue = "closing-day" if opts.issue_on_closing_day else (opts.issue_date.isoformat() if opts.issue_date
                                                                 else None)
        results = backfill_flow(str(months[0]), str(months[-1]), org_path=str(args.org or ""),
                                out_dir=opts.out_url or str(opts.out_dir), draft=opts.draft, refresh=opts.refresh,
                                allow_estimated=opts.allow_estimated, ledger_url=opts.ledger_url, write_report=False,
                                issue_date=issue, actor=opts.actor, notify=not args.no_notify,
                                parallel=getattr(args, "parallel", 1), dask_address=getattr(args, "dask_address", None))
    finally:
        MONTH_LISTENERS.remove(report)
    return 1 if results["failures"] else 0


def cmd_run(args) -> int:
    preflight(args)
    return _run_months(args, months_of(args))


def cmd_backfill(args) -> int:
    preflight(args)
    return _run_months(args, months_of(args))


