"""The organization's two deployments on a Prefect server, served by `billing serve`.

`monthly-invoicing/<org-id>` runs on a cron schedule in a time zone (the
month it invoices is the last one closed, see `monthly_invoicing`);
`backfill/<org-id>` has no schedule and runs when asked, with `start` and
`end`. Their parameters default to the organization's configuration, output
folder and ledger, so a run needs at most a month. `prefect.yaml` at the
repository root describes the same two deployments for a work pool.

Serving needs a real server (PREFECT_API_URL): the temporary one a flow
starts without it cannot schedule, and it stops with the process.
"""
from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.runner import Runner
from prefect.schedules import Cron
from prefect.settings import get_current_settings

from billing.config import Organization
from billing.errors import BillingError, InputError
from flows.monthly import backfill, monthly_invoicing

TAGS = ["hub-billing"]


def api_url() -> str | None:
    """The Prefect API this process talks to: $PREFECT_API_URL, or the active Prefect profile's."""
    return get_current_settings().api.url or None


def check_api(url: str) -> None:
    """One line if the server does not answer, instead of the client's traceback."""
    with get_client(sync_client=True) as client:
        problem = client.api_healthcheck()
    if problem is not None:
        why = str(problem).splitlines()[0] if str(problem) else type(problem).__name__
        raise BillingError(f"the Prefect API at {url} does not answer ({why}); start the server "
                           "(prefect server start) or correct PREFECT_API_URL")


def cron_schedule(cron: str, timezone: str):
    """A Prefect cron schedule, or an `InputError` naming --cron."""
    try:
        return Cron(cron, timezone=timezone)
    except ValueError as err:
        raise InputError(f"--cron {cron!r}: not a cron expression ({str(err).splitlines()[0]}); "
                         "give five fields: minute hour day-of-month month day-of-week, e.g. '0 6 6 * *'") from None


def flow_parameters(org_path: Path, out_dir: Path, ledger_url: str | None) -> dict:
    """What every run of the deployments uses unless told otherwise: absolute paths, as runs start elsewhere."""
    return {"org_path": str(Path(org_path).resolve()), "out_dir": str(Path(out_dir).resolve()),
            "ledger_url": ledger_url or None}


def organization_deployments(org: Organization, parameters: dict, cron: str, timezone: str) -> list:
    """`monthly-invoicing/<org-id>` on the schedule and `backfill/<org-id>` without one."""
    schedule = cron_schedule(cron, timezone)
    tags = TAGS + [org.org_id]
    monthly = monthly_invoicing.to_deployment(
        org.org_id, schedules=[schedule], parameters=parameters, tags=tags,
        description=f"{org.name}: invoice the last closed month (or the month given), at {cron} ({timezone}).")
    back = backfill.to_deployment(
        org.org_id, parameters=parameters, tags=tags,
        description=f"{org.name}: invoice every month from start to end (YYYY-MM), oldest first.")
    return [monthly, back]


def serve_until_stopped(deployments: list) -> None:
    """Register the deployments and run their flow runs until SIGINT or SIGTERM.

    Each flow run is a subprocess of this one. Stopping cancels the runs
    still in progress (they show as Cancelled; run those months again) and
    pauses the schedule until the deployments are served again.
    """
    runner = Runner(pause_on_shutdown=True)
    for deployment in deployments:
        runner.add_deployment(deployment)

    def interrupted(signum, frame):
        sys.stderr.write("interrupted: stopping as on SIGTERM (runs in progress are cancelled)\n")
        runner.handle_sigterm()

    # Ctrl-C stops as SIGTERM does (Runner.start handles that one): a bare KeyboardInterrupt would leave the
    # runs in progress "Running" on the server for ever. It also makes `kill -INT` stop a background
    # `billing serve`, which a shell starts with SIGINT ignored.
    signal.signal(signal.SIGINT, interrupted)
    asyncio.run(runner.start())
