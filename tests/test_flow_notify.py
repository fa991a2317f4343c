"""The Prefect flows notify as the CLI does: a month's summary, a failed month once, and (through the flow's
on_failure hook) whatever else stops a run."""
import pytest
import yaml

from billing.errors import FinalizedInvoiceChanged
from helpers import small_focus_rows, small_org_data, write_focus_csv

pytestmark = pytest.mark.e2e


@pytest.fixture()
def org_path(tmp_path):
    write_focus_csv(tmp_path / "focus" / "2022-01.csv", small_focus_rows()[:-1])
    path = tmp_path / "org.yaml"
    path.write_text(yaml.safe_dump(small_org_data(notifications={"webhook": {"url_env": "TEST_WEBHOOK_URL"}}),
                                   sort_keys=False))
    return path


def params(org_path):
    return dict(org_path=str(org_path), out_dir=str(org_path.parent / "out"), issue_date="closing-day")


def test_monthly_flow_notifies_success_then_a_failed_month_once(prefect_harness, webhook, org_path):
    from flows.monthly import monthly_invoicing

    monthly_invoicing("2022-01", **params(org_path))
    [success] = webhook.texts()
    assert success.startswith("*[hub-billing] 2022-01 invoiced: 3 documents, 3,577.85 USD*\n")
    rows = small_focus_rows()[:-1]
    rows[0][9] = "150.00"   # restated after finalization
    write_focus_csv(org_path.parent / "focus" / "2022-01.csv", rows)
    with pytest.raises(FinalizedInvoiceChanged):
        monthly_invoicing("2022-01", **params(org_path))
    assert len(webhook.texts()) == 2   # the month notified its failure; the on_failure hook did not repeat it
    assert webhook.texts()[1].startswith("*[hub-billing] 2022-01 failed*\n2022-01: data changed after its invoices")


def test_backfill_flow_failure_outside_a_month_is_notified_by_the_hook(prefect_harness, webhook, org_path,
                                                                       monkeypatch):
    import flows.monthly

    def write_revenue_report(org, opts):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(flows.monthly, "write_revenue_report", write_revenue_report)
    with pytest.raises(OSError):
        flows.monthly.backfill("2022-01", "2022-01", **params(org_path))
    month, stopped = webhook.texts()
    assert month.startswith("*[hub-billing] 2022-01 invoiced: 3 documents")
    assert stopped.startswith("*[hub-billing] the backfill 2022-01 to 2022-01 failed*\nthe backfill 2022-01 to "
                              "2022-01 stopped (flow run ")
    assert stopped.endswith("): OSError: [Errno 28] No space left on device")


def test_notify_false_sends_nothing(prefect_harness, webhook, org_path):
    from flows.monthly import backfill

    backfill("2022-01", "2022-01", notify=False, write_report=False, **params(org_path))
    assert webhook.requests == []


def test_a_crashed_run_is_notified_by_the_hook(webhook, org_path):
    """on_crashed: the process was killed; nothing in the flow body could say so."""
    import uuid

    from prefect.client.schemas.objects import FlowRun
    from prefect.states import Crashed

    from flows.monthly import _notify_stopped_run, monthly_invoicing

    run = FlowRun(name="brave-otter", flow_id=uuid.uuid4(), parameters={"month": "2022-01", **params(org_path)})
    _notify_stopped_run(monthly_invoicing, run, Crashed(message="Flow run infrastructure exited with non-zero "
                                                                "status code 137."))
    assert webhook.texts() == ["*[hub-billing] 2022-01 failed*\n2022-01 stopped (flow run brave-otter): Crashed: "
                               "Flow run infrastructure exited with non-zero status code 137."]


def test_cli_through_prefect_notifies_once(prefect_harness, webhook, org_path):
    from billing.cli import main

    assert main(["run", "--prefect", "--month", "2022-01", "--org", str(org_path), "--out",
                 str(org_path.parent / "out"), "--workers", "1", "--issue-date", "closing-day"]) == 0
    [text] = webhook.texts()
    assert text.startswith("*[hub-billing] 2022-01 invoiced: 3 documents, 3,577.85 USD*")
