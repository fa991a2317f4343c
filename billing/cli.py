"""The `billing` command: run, backfill, report, validate, sources check.

Exit codes: 0 success; 2 bad input or configuration (one clear message, no
traceback); 1 anything else (a month whose finalized invoices would change, a
failed reconciliation, a source that could not deliver, an internal error).
run, backfill and report check the whole command line first (`preflight`), so
a wrong argument stops them before any month is read, priced or finalized.
"""
from __future__ import annotations

import argparse
import logging
import os
import stat
import sys
import tempfile
import traceback
from contextlib import nullcontext
from pathlib import Path

from billing.errors import BillingError, InputError

log = logging.getLogger("billing")


def _worker_count(text: str) -> int:
    """The argparse type of --workers: a whole number, at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, at least 1; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="billing", description="Monthly cost recovery and invoicing for JupyterHub communities.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--org", type=Path, default=None, help="organization configuration (default: the bundled sample)")
    common.add_argument("--out", type=Path, default=Path("out"), help="output folder (default: out)")
    common.add_argument("--ledger", default=None, metavar="URL",
                        help="ledger database URL (default: $BILLING_LEDGER_URL, the config's ledger_url, "
                             "or sqlite:///OUT/ledger.db)")
    common.add_argument("-v", "--verbose", action="store_true", help="more detail, and tracebacks of internal errors")
    run_opts = argparse.ArgumentParser(add_help=False)
    run_opts.add_argument("--draft", action="store_true", help="price and render without finalizing (PDFs marked DRAFT)")
    run_opts.add_argument("--refresh", action="store_true", help="re-query live cloud sources instead of their snapshots")
    run_opts.add_argument("--allow-estimated", action="store_true", help="finalize even if a source says figures are estimated")
    run_opts.add_argument("--workers", type=_worker_count, default=None, help="processes rendering PDFs (default: CPU count)")
    run_opts.add_argument("--prefect", action="store_true", help="run through the Prefect flow (records runs in Prefect)")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", parents=[common, run_opts], help="run the monthly job for one month")
    run.add_argument("--month", required=True, help="YYYY-MM")
    back = sub.add_parser("backfill", parents=[common, run_opts], help="run a range of months, oldest first")
    back.add_argument("--from", dest="start", required=True, help="first month, YYYY-MM")
    back.add_argument("--to", dest="end", required=True, help="last month, YYYY-MM")
    sub.add_parser("report", parents=[common], help="write out/revenue.csv and out/revenue.png from the ledger")
    sub.add_parser("validate", parents=[common], help="check the configuration and report every problem")
    sources = sub.add_parser("sources", help="cost sources")
    sources_sub = sources.add_subparsers(dest="sources_command", required=True)
    check = sources_sub.add_parser("check", parents=[common], help="can each cluster's source read the month?")
    check.add_argument("--month", required=True, help="YYYY-MM")
    return p


def _org(args):
    from billing.config import default_organization_path, load_organization

    return load_organization(args.org or default_organization_path())


def _options(args):
    from billing.pipeline import RunOptions

    return RunOptions(out_dir=args.out, draft=args.draft, refresh=args.refresh, allow_estimated=args.allow_estimated,
                      ledger_url=args.ledger, workers=args.workers)


def _month(text: str, option: str = "--month"):
    from billing.months import Month

    try:
        return Month.parse(text)   # refuses months whose issue and due dates would not be calendar dates
    except ValueError as err:
        raise InputError(f"{option}: {err}") from None


def _months(args) -> list:
    """The months a run or backfill covers, oldest first."""
    from billing.months import month_range

    if args.command == "run":
        return [_month(args.month)]
    try:
        return month_range(_month(args.start, "--from"), _month(args.end, "--to"))
    except ValueError as err:
        raise InputError(f"--from/--to: {err}") from None


# ---- checks before anything runs --------------------------------------------------------


def preflight(args) -> None:
    """Check the command line before any month is processed: a wrong input is one `InputError`.

    Months (run, backfill), the configuration file, the output folder and the
    ledger (--ledger, $BILLING_LEDGER_URL or the configuration's ledger_url).
    Nothing is written unless every check passed; then the ledger exists.
    """
    if args.command in ("run", "backfill"):
        _months(args)
    org = _checked_org(args)
    _check_output_folder(args.out)
    _check_ledger(args, org)


def _checked_org(args):
    """The organization, or an `InputError` if --org is not a readable YAML text file or not valid."""
    if args.org is not None:
        try:
            mode = args.org.stat().st_mode
        except OSError:
            mode = None   # missing or unreadable: load_organization says which
        if mode is not None and not stat.S_ISREG(mode):
            raise InputError(f"--org {args.org}: not a file; give the organization's YAML configuration file")
    try:
        return _org(args)
    except UnicodeDecodeError as err:
        raise InputError(f"--org {args.org}: not a text (UTF-8) file: undecodable byte at offset {err.start}; "
                         "give the organization's YAML configuration file") from None


def _check_output_folder(out: Path) -> None:
    """`out` is a folder, or can be made one, and files can be written in it; leaves nothing behind."""
    folder = Path(os.path.abspath(out))
    missing = []
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    if not folder.is_dir():
        where = "is a file" if folder == Path(os.path.abspath(out)) else f"is inside {folder}, which is a file"
        raise InputError(f"--out {out}: {where}; give a folder to write the invoices in")
    created = []
    try:
        for path in reversed(missing):
            path.mkdir()
            created.append(path)
        probe = tempfile.NamedTemporaryFile(dir=os.path.abspath(out), prefix=".billing-probe-")
        probe.close()
    except OSError as err:
        raise InputError(f"--out {out}: cannot {'create' if missing else 'write in'} this folder "
                         f"({err.strerror}); give a folder you can write to") from None
    finally:
        for path in reversed(created):
            try:
                path.rmdir()
            except OSError:
                pass


def _check_ledger(args, org) -> None:
    from billing import ledger as ledger_mod

    if args.ledger is not None and not args.ledger.strip():
        raise InputError("--ledger is empty; give a database URL, or leave it out for sqlite:///OUT/ledger.db")
    url = ledger_mod.ledger_url(org, str(args.out), args.ledger)
    finalizing = args.command in ("run", "backfill") and not args.draft
    if finalizing and _in_memory(url):
        raise InputError(f"ledger {ledger_mod.safe_url(url)}: an in-memory ledger forgets invoice numbers when the "
                         "run ends, so nothing can be finalized in it; give a database file or server")
    ledger_mod.open_ledger(url).dispose()


def _in_memory(url: str) -> bool:
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - open_ledger says what is wrong with it
        return False
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


def _progress():
    """A progress bar on a terminal; nothing when output is piped or logged."""
    if not sys.stderr.isatty():
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    transient=False)


def _say(result, draft: bool) -> None:
    # Written to the stream, not print(): inside a Prefect flow run, print is captured into the run's logs.
    kind = "draft(s)" if draft else "invoice(s)"
    lines = [f"{result.month}: {len(result.invoices)} {kind}; {len(result.created)} new, {len(result.unchanged)} "
             f"unchanged; unattributed {result.unattributed.normalize():f}"]
    lines += [f"  warning: {warning}" for warning in result.warnings]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def _run_months(args, months) -> int:
    from billing.pipeline import MONTH_FAILURES, month_failure, run_month

    org, opts = _org(args), _options(args)
    if args.prefect:
        return _run_months_in_prefect(args, months, opts)
    failures = []
    with _progress() as progress:
        task = progress.add_task("Invoicing", total=len(months)) if progress else None
        for month in months:
            if progress:
                progress.update(task, description=f"Invoicing {month}")
            try:
                _say(run_month(org, month, opts), opts.draft)
            except MONTH_FAILURES as err:
                # One month failing must not stop a backfill; it is reported and the run exits non-zero.
                failures.append(month_failure(month, err))
                print(f"error: {failures[-1]}", file=sys.stderr)
            if progress:
                progress.advance(task)
    if failures and len(months) > 1:
        print(f"{len(failures)} of {len(months)} month(s) failed; nothing was changed for them.", file=sys.stderr)
    return 1 if failures else 0


def _run_months_in_prefect(args, months, opts) -> int:
    """The same months through the Prefect backfill flow, reporting each month as it finishes."""
    print(f"Starting the Prefect flow for {months[0]} to {months[-1]} (a temporary Prefect server may take "
          "a few seconds to start)...", file=sys.stderr, flush=True)
    from flows.monthly import MONTH_LISTENERS, backfill as backfill_flow

    def report(month, result, failure):
        if failure:
            sys.stderr.write(f"error: {failure}\n")
        else:
            _say(result, opts.draft)

    MONTH_LISTENERS.append(report)
    try:
        results = backfill_flow(str(months[0]), str(months[-1]), org_path=str(args.org or ""),
                                out_dir=str(opts.out_dir), draft=opts.draft, refresh=opts.refresh,
                                allow_estimated=opts.allow_estimated, ledger_url=opts.ledger_url, write_report=False)
    finally:
        MONTH_LISTENERS.remove(report)
    return 1 if results["failures"] else 0


def cmd_run(args) -> int:
    preflight(args)
    return _run_months(args, _months(args))


def cmd_backfill(args) -> int:
    preflight(args)
    return _run_months(args, _months(args))


def cmd_report(args) -> int:
    from billing.pipeline import RunOptions, write_revenue_report

    preflight(args)
    rows = write_revenue_report(_org(args), RunOptions(out_dir=args.out, ledger_url=args.ledger))
    months = sorted({r.month for r in rows})
    print(f"revenue report: {len(rows)} row(s) over {len(months)} month(s) -> {args.out / 'revenue.csv'}, "
          f"{args.out / 'revenue.png'}")
    return 0


def cmd_validate(args) -> int:
    org = _checked_org(args)
    print(f"{args.org or 'bundled sample'}: valid — {len(org.communities)} communities, {len(org.clusters)} clusters, "
          f"{len(org.hubs)} hubs, {len(org.pricing_plans)} pricing plans, {len(org.funders)} funders")
    return 0


def cmd_sources_check(args) -> int:
    from billing.sources import SnapshotStore, make_source

    org, month = _checked_org(args), _month(args.month)
    snapshots = SnapshotStore(args.out / "snapshots")
    failed = 0
    for cluster in org.clusters:
        try:
            result = make_source(cluster, org, snapshots).check(month)
        except BillingError as err:
            from billing.sources.base import CheckResult
            result = CheckResult(cluster.id, cluster.source.type, False, str(err))
        failed += not result.ok
        print(f"{'ok  ' if result.ok else 'FAIL'} {cluster.id:<28} {result.source:<22} {result.detail}")
        for warning in result.warnings:
            print(f"     warning: {warning}")
    print(f"{len(org.clusters) - failed} of {len(org.clusters)} source(s) can read {month}")
    return 1 if failed else 0


COMMANDS = {"run": cmd_run, "backfill": cmd_backfill, "report": cmd_report, "validate": cmd_validate,
            "sources": cmd_sources_check}


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:   # argparse printed usage and the error (2), or --help (0)
        return exit_.code if isinstance(exit_.code, int) else 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BillingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the last line of defence: a message, not a traceback
        if args.verbose:
            traceback.print_exc()
        print(f"internal error: {type(err).__name__}: {err} (rerun with -v for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
