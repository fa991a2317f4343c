"""`billing serve` without a server: its schedule, its deployments, and what it refuses.

The same against a real Prefect server is tests/test_server.py (`make test-server`).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from billing.cli import main
from billing.cli.serve import default_cron
from billing.config import parse_organization
from billing.months import Month
from helpers import small_focus_rows, small_org, small_org_data, write_focus_csv

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def org_path(tmp_path) -> Path:
    write_focus_csv(tmp_path / "focus" / "2022-01.csv", small_focus_rows()[:-1])
    path = tmp_path / "org.yaml"
    path.write_text(yaml.safe_dump(small_org_data(), sort_keys=False))
    return path


# ---- the schedule ----------------------------------------------------------------------------------


@pytest.mark.parametrize("org_days, source_days, cron", [
    (5, None, "0 6 6 * *"),     # the default: a month closes on the 6th of the next
    (0, None, "0 6 1 * *"),
    (5, 12, "0 6 13 * *"),      # a source that restates for longer delays the close, and the run
    (40, None, "0 6 28 * *"),   # every month has a 28th; the run then invoices the last month closed by then
])
def test_the_monthly_run_starts_on_the_day_the_month_closes(tmp_path, org_days, source_days, cron):
    data = small_org_data(close_after_days=org_days)
    if source_days is not None:
        data["clusters"][0]["source"]["close_after_days"] = source_days
    org = parse_organization(data, "org.yaml", tmp_path)
    assert default_cron(org) == cron
    day = int(cron.split()[2])
    if day < 28:   # on that day the previous month is the last closed one, whatever the month
        for month in (Month(2026, 1), Month(2026, 2), Month(2028, 2), Month(2026, 12)):
            assert org.last_closed_month(month.next().start.replace(day=day)) == month


def test_prefect_yaml_deploys_the_flows_billing_serve_serves_on_the_same_schedule(tmp_path):
    from prefect.utilities.importtools import import_object

    from flows.monthly import backfill, monthly_invoicing

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    monthly, back = spec["deployments"]
    assert import_object(monthly["entrypoint"]) is monthly_invoicing and import_object(back["entrypoint"]) is backfill
    assert [s["cron"] for s in monthly["schedules"]] == [default_cron(small_org(tmp_path))]
    assert "schedules" not in back
    for deployment in (monthly, back):
        assert deployment["work_pool"]["name"] == "billing"
        assert set(deployment["parameters"]) == {"org_path", "out_dir"}


def test_deployments_carry_the_organization_and_its_schedule(tmp_path, org_path):
    from flows.deployments import flow_parameters, organization_deployments

    org = small_org(tmp_path)
    params = flow_parameters(Path(os.path.relpath(org_path)), Path("out"), None)
    assert params == {"org_path": str(org_path), "out_dir": str(Path.cwd() / "out"), "ledger_url": None}
    monthly, back = organization_deployments(org, params, "0 6 6 * *", "Europe/Paris")
    assert (monthly.flow_name, monthly.name, back.flow_name, back.name) == ("monthly-invoicing", "test-org",
                                                                            "backfill", "test-org")
    [schedule] = monthly.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 6 6 * *", "Europe/Paris")
    assert back.schedules in (None, [])
    assert monthly.parameters == back.parameters == params


# ---- refusals, each one line and exit 2 ---------------------------------------------------------------


def test_without_prefect_api_url_serve_refuses_in_one_line_and_writes_nothing(tmp_path, org_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")   # no profile that would name a server
    result = subprocess.run([str(Path(sys.executable).parent / "billing"), "serve", "--org", str(org_path),
                             "--out", str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: PREFECT_API_URL is not set: billing serve needs a Prefect server")
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option, message", [
    (["--timezone", "Mars/Olympus"], "error: --timezone 'Mars/Olympus': not a time zone"),
    (["--cron", "0 6 32 * *"], "error: --cron '0 6 32 * *': not a cron expression"),
    (["--ledger", "postgresql+psycopg://billing:s3cret@db/billing"], "error: --ledger: the URL holds a password"),
])
def test_serve_refuses_bad_options_in_one_line(org_path, capsys, option, message):
    assert main(["serve", "--org", str(org_path), "--out", str(org_path.parent / "out"), *option]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "s3cret" not in err


def test_serve_needs_the_organization(capsys):
    assert main(["serve"]) == 2
    assert "--org" in capsys.readouterr().err
