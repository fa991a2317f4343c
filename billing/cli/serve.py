"""billing serve: the organization's monthly run on a schedule, and backfills on request, through a Prefect server.

The Prefect side (deployments, schedule, serving) is in `flows/deployments.py`;
this module checks the command line first, so a wrong option stops it
before anything is registered.
"""
from __future__ import annotations

import sys
from pathlib import Path

from billing.cli.common import check_ledger, check_output_folder, checked_org
from billing.errors import InputError
from billing.months import Month

LAST_SCHEDULED_DAY = 28   # every month has it


def add_parsers(sub) -> None:
    serve = sub.add_parser(
        "serve", help="run the monthly invoicing on a schedule (and backfills on request) through a Prefect server",
        description="Serve two deployments on the Prefect server in $PREFECT_API_URL until interrupted (Ctrl-C or "
                    "SIGTERM): monthly-invoicing/ORG-ID on a cron schedule, invoicing the last closed month, and "
                    "backfill/ORG-ID, run on request with start and end. Their runs execute here, as subprocesses.")
    serve.add_argument("--org", type=Path, required=True, help="the organization's configuration file")
    serve.add_argument("--out", type=Path, default=Path("out"), help="output folder of the runs (default: out)")
    serve.add_argument("--ledger", default=None, metavar="URL",
                       help="ledger database URL of the runs (default: $BILLING_LEDGER_URL in this process's "
                            "environment, which runs inherit, the configuration's ledger_url, or sqlite:///OUT/"
                            "ledger.db); it is stored in the deployments, so it must not hold a password")
    serve.add_argument("--cron", default=None, metavar="EXPR",
                       help="when the monthly run starts (default: 06:00 on the day the previous month closes, "
                            "close_after_days after it ends: '0 6 6 * *' with the default 5 days; on an earlier day "
                            "the previous month has not closed, and the run redoes the one before, changing nothing)")
    serve.add_argument("--timezone", default=None, metavar="AREA/CITY",
                       help="time zone of the schedule (default: the organization's timezone, in which months close)")
    serve.add_argument("-v", "--verbose", action="store_true", help="more detail, and tracebacks of internal errors")
    serve.set_defaults(handler=cmd_serve)


def default_cron(org) -> str:
    """06:00 on the day a month closes (the configuration's close_after_days, or a source's longer one), so the
    scheduled run finds the previous month closed and finalizes it. Days past the 28th are run on the 28th."""
    month = Month(2001, 1)
    days_after_end = (org.closing_day(month) - month.end).days   # the month ends on the 1st of the next
    return f"0 6 {min(1 + days_after_end, LAST_SCHEDULED_DAY)} * *"


def check_timezone(name: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(f"--timezone {name!r}: not a time zone; give an IANA name such as Europe/Paris or "
                         "America/New_York") from None
    return name


def check_no_password(url: str | None) -> None:
    """Deployment parameters are shown in the Prefect UI: a ledger URL with a password must not be one."""
    if not url:
        return
    from sqlalchemy.engine import make_url

    try:
        password = make_url(url).password
    except Exception:  # noqa: BLE001 - check_ledger says what is wrong with it
        return
    if password:
        raise InputError("--ledger: the URL holds a password, which would be stored in the deployments and shown "
                         "in the Prefect UI; leave --ledger out and set BILLING_LEDGER_URL for billing serve (its "
                         "runs inherit it), or use PGPASSFILE")


def cmd_serve(args) -> int:
    org = checked_org(args)
    timezone = check_timezone(args.timezone or org.timezone)
    check_no_password(args.ledger)
    cron = args.cron or default_cron(org)
    from flows import deployments

    deployments.cron_schedule(cron, timezone)
    url = deployments.api_url()
    if not url:
        raise InputError("PREFECT_API_URL is not set: billing serve needs a Prefect server that keeps the schedule "
                         "(start one with `prefect server start`, then export "
                         "PREFECT_API_URL=http://127.0.0.1:4200/api)")
    check_output_folder(args.out)
    check_ledger(args, org)
    deployments.check_api(url)
    parameters = deployments.flow_parameters(args.org, args.out, args.ledger)
    served = deployments.organization_deployments(org, parameters, cron, timezone)
    if timezone != org.timezone:
        _say(f"warning: the schedule is in {timezone}, but months close in the organization's time zone "
             f"({org.timezone}); a run before the close redoes the month before")
    _say(f"Serving {org.name} on {url} until interrupted (Ctrl-C, SIGTERM):\n"
         f"  monthly-invoicing/{org.org_id}: at '{cron}' ({timezone}), the last closed month\n"
         f"  backfill/{org.org_id}: on request, e.g. prefect deployment run 'backfill/{org.org_id}' "
         "--param start=YYYY-MM --param end=YYYY-MM\n"
         f"  configuration {parameters['org_path']}; output {parameters['out_dir']}")
    deployments.serve_until_stopped(served)
    _say(f"stopped; the schedule of monthly-invoicing/{org.org_id} is paused until billing serve runs again")
    return 0


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
