"""`billing serve` and prefect.yaml against a real Prefect server, as an operator runs them.

One `prefect server start` per session on a free loopback port, with its own
PREFECT_HOME and SQLite database. `billing serve` (and a work-pool worker)
run as subprocesses in their own sessions, are triggered through the Prefect
client, and are stopped by signal; every process they started must be gone
afterwards. Each process started here carries a marker in its environment,
which its descendants inherit, so a leftover is found in /proc even after it
was re-parented.

Not part of `make test` (pyproject's addopts deselect the `server` marker);
run with `make test-server` (or `pytest -m server`).
"""
from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from pypdf import PdfReader

from billing import ledger
from helpers import focus_row, small_focus_rows, small_org_data, write_focus_csv

pytestmark = pytest.mark.server

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
MARK = "BILLING_TEST_PROCESS_MARK"
START_TIMEOUT = 180     # a server, or billing serve registering its deployments, on a busy 2-core machine
RUN_TIMEOUT = 180       # a flow run from scheduled to final
STOP_TIMEOUT = 60
JANUARY = {"TST-2022-0001", "TST-2022-0002", "TST-ST-2022-0001"}
FEBRUARY = {"TST-2022-0003", "TST-2022-0004", "TST-ST-2022-0002"}


# ---- processes -----------------------------------------------------------------------------------


@dataclass
class Started:
    """A process this test started, in its own session, with the marker its descendants inherit."""

    proc: subprocess.Popen
    marker: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """This environment without any Prefect setting or ledger of the developer's, with its own PREFECT_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "BILLING_LEDGER_URL"}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               PREFECT_LOGGING_LEVEL="INFO")
    env.update(extra)
    return env


def start(args: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> Started:
    marker = uuid.uuid4().hex
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, env={**env, MARK: marker}, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                start_new_session=True)
    return Started(proc, marker, log)


def marked_processes(marker: str) -> list[str]:
    """Every live process whose environment carries the marker: the process and all it started, re-parented or not."""
    needle = f"{MARK}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{entry.name}: {command[:200]}")
        except OSError:   # gone meanwhile, or not ours
            continue
    return found


def stop(started: Started, sig: int) -> int:
    """Signal the process (only it: its children are its own business), wait for it, and return its exit code;
    if it does not stop in time, kill its whole process group and fail."""
    started.proc.send_signal(sig)
    try:
        return started.proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(started.proc.pid, signal.SIGKILL)
        started.proc.wait(10)
        pytest.fail(f"{started.proc.args[:3]} did not stop within {STOP_TIMEOUT} s of {signal.Signals(sig).name}:\n"
                    f"{started.output()[-3000:]}")


def assert_no_leftovers(started: Started) -> None:
    deadline = time.monotonic() + 10   # a child may take a moment to exit after its parent
    while (left := marked_processes(started.marker)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == [], f"processes left behind by {started.proc.args[:3]}:\n" + "\n".join(left)


def wait_for(check, what: str, started: Started, timeout: float = START_TIMEOUT):
    """Poll `check` until it returns something truthy; fail with the process's output if it dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if not started.alive():
            pytest.fail(f"{what}: {started.proc.args[:3]} exited with {started.proc.returncode}:\n"
                        f"{started.output()[-3000:]}")
        time.sleep(1)
    pytest.fail(f"{what}: not within {timeout} s; output so far:\n{started.output()[-3000:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the server and its client ---------------------------------------------------------------------


@dataclass
class Server:
    url: str
    started: Started


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = clean_env(home, PREFECT_SERVER_UI_ENABLED="false",
                    PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}")
    started = start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)], env,
                    home / "server.log")
    url = f"http://127.0.0.1:{port}/api"
    wait_for(lambda: _healthy(url), "the Prefect server answering /api/health", started)
    yield Server(url, started)
    # Prefect's server, not ours: it may exit 0 or by the signal; what matters is that nothing is left.
    assert stop(started, signal.SIGINT) in (0, 130, -signal.SIGINT), started.output()[-3000:]
    assert_no_leftovers(started)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture()
def client(prefect_server):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_server.url}):
        with get_client(sync_client=True) as prefect_client:
            yield prefect_client


def deployment(client, name: str, started: Started, *, paused: bool | None = None):
    """The deployment once it exists (and, if asked, is paused or not), waiting for `started` to register it."""
    from prefect.exceptions import ObjectNotFound

    def found():
        try:
            dep = client.read_deployment_by_name(name)
        except ObjectNotFound:
            return None
        return dep if paused is None or dep.paused == paused else None

    return wait_for(found, f"deployment {name}", started)


def run_to_completion(client, flow_run_ids: list, started: Started) -> list:
    """Wait for every flow run to reach a final state; each must be Completed."""
    def finished():
        runs = [client.read_flow_run(i) for i in flow_run_ids]
        return runs if all(r.state is not None and r.state.is_final() for r in runs) else None

    runs = wait_for(finished, "flow runs to finish", started, RUN_TIMEOUT)
    for run in runs:
        assert run.state.is_completed(), f"{run.name}: {run.state.type} {run.state.message}\n{started.output()[-4000:]}"
    return runs


def artifacts(client, keys: list[str]) -> list:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))


# ---- an organization with two months of cost -------------------------------------------------------


def write_org(folder: Path, **overrides) -> Path:
    """The small test organization; January as in the other tests, February with cost on every hub."""
    february = "2022-02-01T00:00:00Z"
    rows = small_focus_rows()[:-1] + [
        focus_row("111100000000", "80.00", tags={"2i2c:hub-name": "alpha"}, period=february),
        focus_row("111100000000", "40.00", tags={"2i2c:hub-name": "beta"}, period=february),
        focus_row("222200000000", "300.00", tags={"2i2c:hub-name": "prod"}, period=february)]
    write_focus_csv(folder / "focus" / "2022.csv", rows)
    path = folder / "org.yaml"
    path.write_text(yaml.safe_dump(small_org_data(**overrides), sort_keys=False))
    return path


def serve(tmp_path: Path, server: Server, org_path: Path, *extra: str) -> Started:
    env = clean_env(tmp_path / "prefect-home", PREFECT_API_URL=server.url, PREFECT_RUNNER_POLL_FREQUENCY="2")
    return start([str(BIN / "billing"), "serve", "--org", str(org_path), "--out", str(tmp_path / "out"), *extra],
                 env, tmp_path / "serve.log", cwd=tmp_path)


def pdf_text(path: Path) -> str:
    return " ".join(page.extract_text() for page in PdfReader(path).pages)


def check_outputs(out: Path, month: str, numbers: set[str]) -> None:
    """The ledger, invoices.csv and the PDFs agree on the month's documents."""
    engine = ledger.open_ledger(f"sqlite:///{out / 'ledger.db'}")
    try:
        docs = ledger.month_invoices(engine, month)
    finally:
        engine.dispose()
    assert {d.number for d in docs} == numbers and all(d.status == "finalized" for d in docs)
    with open(out / month / "invoices.csv", newline="") as fh:
        assert {row["invoice_number"] for row in csv.DictReader(fh)} == numbers
    for number in numbers:
        assert number in pdf_text(out / month / "invoices" / f"{number}.pdf")


# ---- the tests --------------------------------------------------------------------------------------


def test_billing_serve_schedules_runs_and_records_artifacts(tmp_path, prefect_server, client):
    org_path = write_org(tmp_path / "org")
    served = serve(tmp_path, prefect_server, org_path)
    monthly = deployment(client, "monthly-invoicing/test-org", served, paused=False)
    back = deployment(client, "backfill/test-org", served, paused=False)

    [schedule] = monthly.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 6 6 * *", "UTC")
    assert back.schedules == []
    out = tmp_path / "out"
    assert monthly.parameters == back.parameters == {"org_path": str(org_path), "out_dir": str(out),
                                                     "ledger_url": None}

    # Both at once: one run per organization and month at a time, so January is invoiced once.
    runs = [client.create_flow_run_from_deployment(monthly.id, parameters={"month": "2022-01",
                                                                             "issue_date": "closing-day"}),
            client.create_flow_run_from_deployment(back.id, parameters={"start": "2022-01", "end": "2022-02",
                                                                          "issue_date": "closing-day"})]
    run_to_completion(client, [r.id for r in runs], served)
    check_outputs(out, "2022-01", JANUARY)
    check_outputs(out, "2022-02", FEBRUARY)

    # Each month's summary and documents, from each run that did the month.
    found = artifacts(client, ["invoicing-test-org-2022-01", "invoices-test-org-2022-01",
                               "invoicing-test-org-2022-02", "invoices-test-org-2022-02"])
    by_key: dict[str, list] = {}
    for artifact in found:
        by_key.setdefault(artifact.key, []).append(artifact)
    monthly_run, backfill_run = (r.id for r in runs)
    assert {k: sorted(str(a.flow_run_id) for a in v) for k, v in by_key.items()} == {
        "invoicing-test-org-2022-01": sorted([str(monthly_run), str(backfill_run)]),
        "invoices-test-org-2022-01": sorted([str(monthly_run), str(backfill_run)]),
        "invoicing-test-org-2022-02": [str(backfill_run)],
        "invoices-test-org-2022-02": [str(backfill_run)]}
    for artifact in by_key["invoices-test-org-2022-02"]:
        table = json.loads(artifact.data)
        assert {row["number"] for row in table} == FEBRUARY
        assert all(Path(row["pdf"]).is_file() for row in table)
    for artifact in by_key["invoicing-test-org-2022-01"]:
        assert artifact.type == "markdown"
        assert "3,577.85 USD" in artifact.data and str(out / "2022-01") in artifact.data

    assert stop(served, signal.SIGTERM) == 0, served.output()[-3000:]
    assert "stopped; the schedule of monthly-invoicing/test-org is paused" in served.output()
    assert client.read_deployment_by_name("monthly-invoicing/test-org").paused
    assert_no_leftovers(served)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_billing_serve_and_the_run_in_progress(tmp_path, prefect_server, client, sig):
    org_id = f"stopped-by-{sig.name.lower()}"
    org_path = write_org(tmp_path / "org", id=org_id)
    served = serve(tmp_path, prefect_server, org_path)
    back = deployment(client, f"backfill/{org_id}", served, paused=False)
    run = client.create_flow_run_from_deployment(back.id, parameters={"start": "2022-01", "end": "2022-02"})
    wait_for(lambda: client.read_flow_run(run.id).state.is_running(), "the backfill running", served, RUN_TIMEOUT)
    assert len(marked_processes(served.marker)) >= 2, "the flow run's process carries the marker too"

    assert stop(served, sig) == 0, served.output()[-3000:]
    assert_no_leftovers(served)
    # Not left "Running" on the server: cancelled (or, had it just finished, completed); run the months again.
    state = client.read_flow_run(run.id).state
    assert state.is_cancelled() or state.is_completed(), f"{state.type} {state.message}"


def test_prefect_yaml_deploys_the_same_flows_to_a_work_pool(tmp_path, prefect_server, client):
    org_path = write_org(tmp_path / "org", id="pool-org")
    home = tmp_path / "prefect-home"
    env = clean_env(home, PREFECT_API_URL=prefect_server.url, BILLING_ORG=str(org_path),
                    BILLING_OUT=str(tmp_path / "out"), BILLING_ORG_ID="pool-org", BILLING_TIMEZONE="Europe/Paris",
                    PREFECT_WORKER_QUERY_SECONDS="2")
    prefect = str(BIN / "prefect")
    for command in ([prefect, "work-pool", "create", "billing", "--type", "process", "--overwrite"],
                    [prefect, "--no-prompt", "deploy", "--all"]):
        done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    worker = start([prefect, "worker", "start", "--pool", "billing"], env, tmp_path / "worker.log", cwd=tmp_path)
    monthly = deployment(client, "monthly-invoicing/pool-org", worker)
    back = deployment(client, "backfill/pool-org", worker)
    [schedule] = monthly.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 6 6 * *", "Europe/Paris")
    assert monthly.work_pool_name == back.work_pool_name == "billing" and back.schedules == []
    run = client.create_flow_run_from_deployment(monthly.id, parameters={"month": "2022-01",
                                                                         "issue_date": "closing-day"})
    run_to_completion(client, [run.id], worker)
    check_outputs(tmp_path / "out", "2022-01", JANUARY)
    assert artifacts(client, ["invoices-pool-org-2022-01"])

    stop(worker, signal.SIGTERM)   # Prefect's worker: its exit code is its own business; what it leaves is ours
    assert_no_leftovers(worker)
