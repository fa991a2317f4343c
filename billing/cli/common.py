"""What the commands share: the configuration, options, months, and the checks before anything runs."""
from __future__ import annotations

import argparse
import datetime as dt
import os
import stat
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

from billing.errors import InputError


def worker_count(text: str) -> int:
    """The argparse type of --workers: a whole number, at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, at least 1; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def issue_date(text: str) -> dt.date | str:
    """The argparse type of --issue-date: YYYY-MM-DD, or closing-day (the day each month closed)."""
    if text == "closing-day":
        return text
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a date YYYY-MM-DD or closing-day, got {text!r}") from None


def common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--org", type=Path, default=None, help="organization configuration (default: the bundled sample)")
    common.add_argument("--out", default=None, metavar="DIR|URL",
                        help="output folder, or an object-store prefix such as s3://bucket/billing "
                             "(default: the configuration's out_dir, else out)")
    common.add_argument("--ledger", default=None, metavar="URL",
                        help="ledger database URL (default: $BILLING_LEDGER_URL, the config's ledger_url, "
                             "or sqlite:///OUT/ledger.db)")
    common.add_argument("-v", "--verbose", action="store_true", help="more detail, and tracebacks of internal errors")
    return common


def document_options() -> argparse.ArgumentParser:
    """Options of every command that issues documents."""
    opts = argparse.ArgumentParser(add_help=False)
    opts.add_argument("--workers", type=worker_count, default=None, help="processes rendering PDFs (default: CPU count)")
    opts.add_argument("--issue-date", type=issue_date, default=None, metavar="YYYY-MM-DD|closing-day",
                      help="the date new documents are issued (default: today); closing-day: the day each month "
                           "closed, for backfilling history")
    opts.add_argument("--actor", default=None, help="who does it, for the event log (default: your user name)")
    opts.add_argument("--lock-wait", type=float, default=120.0, metavar="SECONDS",
                      help="how long to wait for a month that another run is invoicing (default: 120)")
    return opts


def load_org(args):
    from billing.config import default_organization_path, load_organization

    org = load_organization(args.org or default_organization_path())
    resolve_output(args, org.out_dir)
    return org


def resolve_output(args, configured: str | None = None) -> None:
    """Settle where outputs go: args.out becomes the local folder; for an object-store URL (s3://, gs://,
    az://) args.out_url is the URL and args.out the local folder that mirrors it."""
    from billing.storage import cache_dir, is_url

    if getattr(args, "out_url", None) is not None or isinstance(args.out, Path):
        return
    location = args.out if args.out is not None else (configured or "out")
    if is_url(location):
        args.out_url, args.out = location.rstrip("/"), cache_dir(location)
    else:
        args.out_url, args.out = None, Path(os.path.expanduser(location))


def run_options(args):
    from billing.pipeline import RunOptions

    issue = getattr(args, "issue_date", None)
    return RunOptions(out_dir=args.out, out_url=getattr(args, "out_url", None), draft=getattr(args, "draft", False), refresh=getattr(args, "refresh", False),
                      allow_estimated=getattr(args, "allow_estimated", False), ledger_url=args.ledger,
                      workers=getattr(args, "workers", None), issue_date=issue if isinstance(issue, dt.date) else None,
                      issue_on_closing_day=issue == "closing-day", actor=getattr(args, "actor", None),
                      lock_wait=getattr(args, "lock_wait", 120.0))


def parse_month(text: str, option: str = "--month"):
    from billing.months import Month

    try:
        return Month.parse(text)   # refuses months whose issue and due dates would not be calendar dates
    except ValueError as err:
        raise InputError(f"{option}: {err}") from None


def months_of(args) -> list:
    """The months a run or backfill covers, oldest first."""
    from billing.months import month_range

    if args.command != "backfill":
        return [parse_month(args.month)]
    try:
        return month_range(parse_month(args.start, "--from"), parse_month(args.end, "--to"))
    except ValueError as err:
        raise InputError(f"--from/--to: {err}") from None


# ---- checks before anything runs --------------------------------------------------------


def preflight(args) -> None:
    """Check the command line before any month is processed: a wrong input is one `InputError`.

    Months (run, backfill), the configuration file, the output folder and the
    ledger (--ledger, $BILLING_LEDGER_URL or the configuration's ledger_url).
    Nothing is written unless every check passed; then the ledger exists.
    """
    if getattr(args, "month", None) or getattr(args, "start", None):
        months_of(args)
    org = checked_org(args)
    check_output_folder(args.out)
    if args.out_url:
        check_object_store(args, org)
    check_ledger(args, org)


def check_object_store(args, org) -> None:
    """Outputs in an object store: it must be writable, and the ledger must not live on this machine."""
    from billing import ledger as ledger_mod
    from billing.storage import Mirror

    Mirror(args.out_url, args.out).check_writable()
    if not (args.ledger or os.environ.get(ledger_mod.LEDGER_ENV) or org.ledger_url):
        raise InputError(f"--out {args.out_url}: with the outputs in an object store, the ledger must not be a file "
                         "on this machine (it would be lost with it): give --ledger postgresql+psycopg://..., "
                         f"${ledger_mod.LEDGER_ENV} or ledger_url")


def checked_org(args):
    """The organization, or an `InputError` if --org is not a readable YAML text file or not valid."""
    if args.org is not None:
        try:
            mode = args.org.stat().st_mode
        except OSError:
            mode = None   # missing or unreadable: load_organization says which
        if mode is not None and not stat.S_ISREG(mode):
            raise InputError(f"--org {args.org}: not a file; give the organization's YAML configuration file")
    try:
        return load_org(args)
    except UnicodeDecodeError as err:
        raise InputError(f"--org {args.org}: not a text (UTF-8) file: undecodable byte at offset {err.start}; "
                         "give the organization's YAML configuration file") from None


def check_output_folder(out: Path) -> None:
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


def check_ledger(args, org) -> None:
    from billing import ledger as ledger_mod

    if args.ledger is not None and not args.ledger.strip():
        raise InputError("--ledger is empty; give a database URL, or leave it out for sqlite:///OUT/ledger.db")
    url = ledger_mod.ledger_url(org, str(args.out), args.ledger)
    finalizing = args.command in ("run", "backfill", "amend", "void", "serve") and not getattr(args, "draft", False)
    if finalizing and in_memory(url):
        raise InputError(f"ledger {ledger_mod.safe_url(url)}: an in-memory ledger forgets invoice numbers when the "
                         "run ends, so nothing can be finalized in it; give a database file or server")
    ledger_mod.open_ledger(url).dispose()


def in_memory(url: str) -> bool:
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - open_ledger says what is wrong with it
        return False
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


def progress_bar():
    """A progress bar on a terminal; nothing when output is piped or logged."""
    if not sys.stderr.isatty():
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    transient=False)


def say(result, draft: bool) -> None:
    # Written to the stream, not print(): inside a Prefect flow run, print is captured into the run's logs.
    kind = "draft(s)" if draft or getattr(result, "draft", False) else "document(s)"
    lines = [f"{result.month}: {len(result.invoices)} {kind}; {len(result.created)} new, {len(result.unchanged)} "
             f"unchanged; unattributed {result.unattributed.normalize():f}"]
    lines += [f"  warning: {warning}" for warning in result.warnings]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


