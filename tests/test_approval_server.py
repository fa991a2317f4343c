"""`approval: required` against a real Prefect server: the monthly flow drafts the month, pauses for a MonthApproval
input, and is answered through the Prefect API (`resume_flow_run(id, run_input=...)`): approved, it finalizes and
e-mails the documents (to aiosmtpd on loopback); rejected, nothing is finalized and the reason is kept; unanswered,
it times out with nothing finalized. Run with `make test-server` (one Prefect server per session, see
test_server.py)."""
from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from billing import ledger
from notify_servers import PASSWORD
from test_server import (RUN_TIMEOUT, Started, client, clean_env, prefect_server, start, stop,  # noqa: F401
                         wait_for, write_org)

pytestmark = pytest.mark.server

JANUARY = {"TST-2022-0001", "TST-2022-0002", "TST-ST-2022-0001"}
FLOW = ("import sys\n"
        "from flows.monthly import monthly_invoicing\n"
        "monthly_invoicing(month='2022-01', org_path=sys.argv[1], out_dir=sys.argv[2], issue_date='closing-day')\n")


def start_month(tmp_path: Path, server, smtp_port: int, **approval) -> Started:
    """The monthly flow for January, in its own process, on the server, with approval required."""
    smtp = {"host": "127.0.0.1", "port": smtp_port, "from": "Hub Billing <billing@example.org>",
            "username_env": "TEST_SMTP_USER", "password_env": "TEST_SMTP_PASSWORD", "timeout": 10}
    org = write_org(tmp_path, smtp=smtp, notifications={"email": {"to": ["finance@example.org"]}},
                    approval={"required": True, **approval})
    env = clean_env(tmp_path / "prefect-home", PREFECT_API_URL=server.url)
    return start([sys.executable, "-c", FLOW, str(org), str(tmp_path / "out")], env, tmp_path / "flow.log",
                 cwd=tmp_path)


def paused_run(client, started: Started):
    """The flow run once it is paused for its input."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    def paused():
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))))
        return next((r for r in runs if r.parameters.get("out_dir") == started.proc.args[-1]), None)

    return wait_for(paused, "the monthly flow run paused for approval", started, RUN_TIMEOUT)


def finish(started: Started) -> int:
    try:
        return started.proc.wait(RUN_TIMEOUT)
    except Exception:
        stop(started, signal.SIGTERM)
        raise


def month_documents(tmp_path: Path) -> list:
    engine = ledger.open_ledger(f"sqlite:///{tmp_path / 'out' / 'ledger.db'}")
    try:
        return ledger.month_invoices(engine, "2022-01")
    finally:
        engine.dispose()


def latest_run(tmp_path: Path, org_id: str = "test-org"):
    engine = ledger.open_ledger(f"sqlite:///{tmp_path / 'out' / 'ledger.db'}")
    try:
        return ledger.latest_runs(engine, org_id)["2022-01"]
    finally:
        engine.dispose()


def subjects(smtp_server) -> list[str]:
    return [r.message["Subject"] for r in smtp_server.received]


def test_approved_through_the_api_finalizes_and_sends(prefect_server, client, smtp_server, tmp_path):
    from prefect.flow_runs import resume_flow_run

    started = start_month(tmp_path, prefect_server, smtp_server.port)
    run = paused_run(client, started)
    assert {d.status for d in month_documents(tmp_path)} == {"draft"}
    wait_for(lambda: smtp_server.received, "the approval request", started)
    assert subjects(smtp_server) == ["[hub-billing] 2022-01 waiting for approval: 3 drafts, 3,577.85 USD"]
    assert f"resuming the paused flow run {run.name} ({run.id})" in \
        smtp_server.received[0].message.get_body(("plain",)).get_content()
    resume_flow_run(run.id, run_input={"approve": True, "reason": "matches the AWS bill", "approver": "maria"})
    assert finish(started) == 0, started.output()[-4000:]
    assert client.read_flow_run(run.id).state.is_completed()
    docs = month_documents(tmp_path)
    assert {d.number for d in docs} == JANUARY and {d.status for d in docs} == {"finalized"}
    documents = {r.message["Subject"].split()[-2]: r for r in smtp_server.received
                 if not r.message["Subject"].startswith("[hub-billing]")}
    assert set(documents) == JANUARY
    [pdf] = list(documents["TST-2022-0001"].message.iter_attachments())
    assert pdf.get_content() == (tmp_path / "out" / "2022-01" / "invoices" / "TST-2022-0001.pdf").read_bytes()
    engine = ledger.open_ledger(f"sqlite:///{tmp_path / 'out' / 'ledger.db'}")
    history = ledger.history(engine, "TST-2022-0001")
    engine.dispose()
    assert [e.event for e in history] == ["finalized", "sent"] and history[0].actor == "maria"
    run_row = latest_run(tmp_path)
    assert (run_row.outcome, run_row.actor, run_row.details["approval_reason"]) == ("finalized", "maria",
                                                                                    "matches the AWS bill")
    summary = next(r for r in smtp_server.received if r.message["Subject"].startswith("[hub-billing] 2022-01 invoiced"))
    assert summary.message["Subject"] == "[hub-billing] 2022-01 invoiced: 3 documents, 3,577.85 USD; approved by maria"
    text = summary.message.get_body(("plain",)).get_content()
    assert "Approved by maria: matches the AWS bill" in text and "Sending: 2022-01: 3 sent, 0 skipped, 0 failed." in text
    assert PASSWORD not in started.output()


def test_rejected_through_the_api_finalizes_nothing_and_keeps_the_reason(prefect_server, client, smtp_server,
                                                                          tmp_path):
    from prefect.flow_runs import resume_flow_run

    started = start_month(tmp_path, prefect_server, smtp_server.port)
    run = paused_run(client, started)
    resume_flow_run(run.id, run_input={"approve": False, "reason": "AWS credits are missing", "approver": "maria"})
    assert finish(started) == 0, started.output()[-4000:]
    assert {d.status for d in month_documents(tmp_path)} == {"draft"}
    run_row = latest_run(tmp_path)
    assert (run_row.command, run_row.outcome, run_row.message, run_row.actor) == (
        "approve", "rejected", "AWS credits are missing", "maria")
    assert subjects(smtp_server) == ["[hub-billing] 2022-01 waiting for approval: 3 drafts, 3,577.85 USD",
                                     "[hub-billing] 2022-01 rejected by maria: nothing finalized"]
    assert "2022-01 was rejected by maria: AWS credits are missing" in \
        smtp_server.received[1].message.get_body(("plain",)).get_content()


def test_unanswered_it_times_out_with_nothing_finalized(prefect_server, client, smtp_server, tmp_path):
    started = start_month(tmp_path, prefect_server, smtp_server.port, timeout_hours=0.004)   # 14 s
    run = paused_run(client, started)
    assert finish(started) != 0
    assert client.read_flow_run(run.id).state.is_failed()
    assert {d.status for d in month_documents(tmp_path)} == {"draft"}
    run_row = latest_run(tmp_path)
    assert (run_row.command, run_row.outcome) == ("approve", "expired")
    assert run_row.message.startswith("2022-01 was not approved within 0.004 hours, so nothing was finalized")
    assert subjects(smtp_server) == ["[hub-billing] 2022-01 waiting for approval: 3 drafts, 3,577.85 USD",
                                     "[hub-billing] 2022-01 was not approved in time: nothing finalized"]
