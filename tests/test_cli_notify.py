"""`billing run` / `backfill` notify through a real SMTP server and webhook listener on loopback; a notification that
cannot be sent is a warning and leaves the exit code as it was; no secret reaches any output."""
import logging

import pytest
import yaml

from billing.cli import main
from billing.errors import SourceError
from helpers import small_focus_rows, small_org_data, write_focus_csv
from notify_servers import PASSWORD, free_port


def write_org(tmp_path, smtp_port, **notifications):
    write_focus_csv(tmp_path / "focus" / "2022-01.csv", small_focus_rows()[:-1])   # January only
    smtp = {"host": "127.0.0.1", "port": smtp_port, "from": "Hub Billing <billing@example.org>",
            "username_env": "TEST_SMTP_USER", "password_env": "TEST_SMTP_PASSWORD", "timeout": 5}
    notifications = notifications or {"email": {"to": ["finance@example.org"]},
                                      "webhook": {"url_env": "TEST_WEBHOOK_URL"}}
    path = tmp_path / "org.yaml"
    path.write_text(yaml.safe_dump(small_org_data(smtp=smtp, notifications=notifications), sort_keys=False))
    return path


def billing(org_path, command, *args):
    return main([command, "--org", str(org_path), "--out", str(org_path.parent / "out"), "--workers", "1",
                 "--issue-date", "closing-day", *args])


def body(received) -> str:
    return received.message.get_body(("plain",)).get_content().replace("\r\n", "\n")


def test_run_sends_the_summary_by_email_and_webhook(smtp_server, webhook, tmp_path, capsys):
    org = write_org(tmp_path, smtp_server.port)
    assert billing(org, "run", "--month", "2022-01") == 0
    got = smtp_server.only_message()
    assert got.message["Subject"] == "[hub-billing] 2022-01 invoiced: 3 documents, 3,577.85 USD"
    text = body(got)
    assert text.startswith("2022-01 invoiced: 3 documents (2 invoices, 1 statement); 3 new, 0 unchanged.\n"
                           "Totals of the month's documents: 3,577.85 USD.\n"
                           "Unattributed cloud cost: 4.33 USD (see attribution.csv).\n")
    assert "  TST-2022-0001  invoice  Alpha University  2,022.60 USD" in text
    assert f"Files: {tmp_path / 'out' / '2022-01'} (invoices/" in text
    [chat] = webhook.texts()
    assert chat.startswith("*[hub-billing] 2022-01 invoiced: 3 documents, 3,577.85 USD*\n")
    assert "warning" not in capsys.readouterr().err


def test_a_failing_notification_leaves_the_exit_code_and_shows_no_secret(monkeypatch, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    port = free_port()   # no mail server there
    monkeypatch.setenv("TEST_SMTP_USER", "billing-bot")
    monkeypatch.setenv("TEST_SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("TEST_WEBHOOK_URL", "https://hooks.invalid/services/T0/B0/s3cretTOKEN")
    monkeypatch.setattr("billing.notify.WEBHOOK_RETRY_DELAYS", ())
    org = write_org(tmp_path, port)
    assert billing(org, "run", "--month", "2022-01") == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning: notification")]
    assert warnings[0] == (f"warning: notification not sent by e-mail: the mail server 127.0.0.1:{port}: cannot "
                           "connect (Connection refused)")
    assert warnings[1].startswith("warning: notification not sent by webhook: the webhook in $TEST_WEBHOOK_URL "
                                  "could not be reached")
    everything = captured.out + captured.err + caplog.text
    assert PASSWORD not in everything and "s3cretTOKEN" not in everything


def test_a_failed_month_is_notified_and_keeps_exit_one(smtp_server, webhook, tmp_path, capsys):
    org = write_org(tmp_path, smtp_server.port, webhook={"url_env": "TEST_WEBHOOK_URL"}, on=["failure"])
    assert billing(org, "run", "--month", "2022-01") == 0          # success: not in `on`
    rows = small_focus_rows()[:-1]
    rows[0][9] = "150.00"   # the cloud restated alpha's compute after the month was finalized
    write_focus_csv(tmp_path / "focus" / "2022-01.csv", rows)
    webhook.statuses = [500, 500, 500]                               # and the webhook is down
    assert billing(org, "run", "--month", "2022-01") == 1
    assert "warning: notification not sent by webhook: the webhook in $TEST_WEBHOOK_URL answered 500" in \
        capsys.readouterr().err
    assert len(webhook.requests) == 3
    text = webhook.texts()[0]
    assert text.startswith("*[hub-billing] 2022-01 failed*\n2022-01: data changed after its invoices were finalized")
    assert "community alpha: invoice TST-2022-0001 total 2022.60 USD, recomputed 2072.60" in text


def test_a_backfill_notifies_the_incomplete_month_then_one_summary(smtp_server, webhook, tmp_path, monkeypatch):
    from billing import pipeline

    real = pipeline.ingest_month

    def ingest(org, month, *args, **kwargs):
        if str(month) == "2022-02":
            raise SourceError("aws_cost_explorer (shared)", "throttled (503), gave up after 3 attempts")
        return real(org, month, *args, **kwargs)

    monkeypatch.setattr(pipeline, "ingest_month", ingest)
    org = write_org(tmp_path, smtp_server.port)
    assert billing(org, "backfill", "--from", "2022-01", "--to", "2022-02") == 1
    subjects = [r.message["Subject"] for r in smtp_server.received]
    assert subjects == ["[hub-billing] 2022-02 is incomplete: nothing finalized, run it again later",
                        "[hub-billing] Backfill 2022-01 to 2022-02: 1 of 2 month(s) invoiced"]
    summary = body(smtp_server.received[1])
    assert "  2022-01: 3 documents, 3 new; 3,577.85 USD\n" in summary
    assert "  - 2022-02 is incomplete: aws_cost_explorer (shared): throttled (503)" in summary
    assert [t.splitlines()[0] for t in webhook.texts()] == ["*" + s + "*" for s in subjects]


def test_no_notify_sends_nothing(smtp_server, webhook, tmp_path):
    org = write_org(tmp_path, smtp_server.port)
    assert billing(org, "run", "--month", "2022-01", "--no-notify") == 0
    assert smtp_server.received == [] and webhook.requests == []


def test_validate_warns_about_unset_variables(tmp_path, monkeypatch, capsys):
    for name in ("TEST_SMTP_USER", "TEST_SMTP_PASSWORD", "TEST_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TEST_SMTP_USER", "billing-bot")
    org = write_org(tmp_path, 587)
    assert main(["validate", "--org", str(org)]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "warning: smtp.password_env: the environment variable $TEST_SMTP_PASSWORD is not set here; messages cannot "
        "be sent without it",
        "warning: notifications.webhook.url_env: the environment variable $TEST_WEBHOOK_URL is not set here; "
        "messages cannot be sent without it"]


@pytest.mark.parametrize("command", [["run", "--month", "2022-01"], ["backfill", "--from", "2022-01", "--to",
                                                                      "2022-01"]])
def test_no_notification_for_bad_input(smtp_server, webhook, tmp_path, command):
    """A wrong command line is the person's at the terminal to fix: exit 2 and nothing sent."""
    org = write_org(tmp_path, smtp_server.port)
    assert billing(org, *command, "--workers", "0") == 2
    assert smtp_server.received == [] and webhook.requests == []
