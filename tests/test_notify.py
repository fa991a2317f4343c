"""billing.notify: the messages, and their delivery by e-mail (aiosmtpd) and webhook (a local HTTP listener).

A notification that cannot be delivered is a warning, never an exception, and
no secret (the SMTP password, the webhook URL) appears in any output.
"""
import logging
from decimal import Decimal as D
from types import SimpleNamespace

import pytest

from billing.attribution import ReconciliationRow
from billing.config import parse_organization
from billing.errors import FinalizedInvoiceChanged, SourceError
from billing.notify import Notifier, month_summary
from billing.pipeline import MonthResult
from helpers import small_org_data
from notify_servers import PASSWORD, REFUSED, free_port


def doc(number, kind, name, total, currency="USD"):
    return SimpleNamespace(number=number, document_type=kind, bill_to={"name": name}, party_id=name.lower(),
                           total=D(total), currency=currency)


def month_result(month="2022-01", draft=False) -> MonthResult:
    docs = [doc("TST-2022-0001", "invoice", "Alpha University", "2022.60"),
            doc("TST-ST-2022-0001", "statement", "Beta Lab", "0.00"),
            doc("TST-2022-0002", "invoice", "Big Grant", "1555.25"),
            doc("TST-2022-0003", "invoice", "Gamma <R&D>", "1000.00", "EUR")]
    recon = [ReconciliationRow("aws", "999900000000", "USD", D("582.18"), D("577.85"), D("4.33")),
             ReconciliationRow("gcp", "01AB", "EUR", D("10"), D("10"), D("0"))]
    return MonthResult(month, docs, ["TST-2022-0001", "TST-2022-0002", "TST-2022-0003"], ["TST-ST-2022-0001"],
                       recon, D("4.33"), warnings=["2022-01: 4.33 of cost is unattributed; see attribution.csv"],
                       draft=draft)


def org_with(smtp_port=None, **notifications):
    data = {}
    if smtp_port is not None:
        data["smtp"] = {"host": "127.0.0.1", "port": smtp_port, "from": "Hub Billing <billing@example.org>",
                        "username_env": "TEST_SMTP_USER", "password_env": "TEST_SMTP_PASSWORD", "timeout": 5}
    data["notifications"] = notifications
    return parse_organization(small_org_data(**data), "org.yaml")


def notifier(org, tmp_path, warnings):
    return Notifier(org, tmp_path / "out", warn=warnings.append)


def test_the_success_summary_says_month_documents_totals_unattributed_warnings_and_files(tmp_path):
    notice = month_summary(month_result(), tmp_path / "out" / "2022-01")
    assert notice.event == "success"
    assert notice.subject == "2022-01 invoiced: 4 documents, 1,000.00 EUR, 3,577.85 USD"
    assert notice.lines == (
        "2022-01 invoiced: 4 documents (3 invoices, 1 statement); 3 new, 1 unchanged.",
        "Totals of the month's documents: 1,000.00 EUR, 3,577.85 USD.",
        "Unattributed cloud cost: 4.33 USD (see attribution.csv).",
        "Warning: 2022-01: 4.33 of cost is unattributed; see attribution.csv",
        f"Files: {tmp_path / 'out' / '2022-01'} (invoices/, invoices.csv, attribution.csv, reconciliation.csv)")
    assert notice.details == ("Documents:",
                              "  TST-2022-0001  invoice  Alpha University  2,022.60 USD",
                              "  TST-ST-2022-0001  statement  Beta Lab  0.00 USD",
                              "  TST-2022-0002  invoice  Big Grant  1,555.25 USD",
                              "  TST-2022-0003  invoice  Gamma <R&D>  1,000.00 EUR")
    draft = month_summary(month_result(draft=True), tmp_path)
    assert draft.subject.startswith("2022-01 drafts ready (nothing finalized): 4 documents")


def test_success_by_email_and_webhook(smtp_server, webhook, tmp_path):
    warnings = []
    org = org_with(smtp_server.port, email={"to": ["finance@example.org"], "cc": ["ops@example.org"]},
                   webhook={"url_env": "TEST_WEBHOOK_URL"}, subject_prefix="[billing test]")
    notifier(org, tmp_path, warnings).month_succeeded(month_result())
    assert warnings == []
    got = smtp_server.only_message()
    assert got.message["Subject"] == "[billing test] 2022-01 invoiced: 4 documents, 1,000.00 EUR, 3,577.85 USD"
    assert sorted(got.recipients) == ["finance@example.org", "ops@example.org"]
    body = got.message.get_body(("plain",)).get_content()
    assert "Totals of the month's documents: 1,000.00 EUR, 3,577.85 USD." in body
    assert "  TST-2022-0002  invoice  Big Grant  1,555.25 USD" in body
    assert "-- hub-billing for Test Org, on " in body
    [text] = webhook.texts()
    assert text.startswith("*[billing test] 2022-01 invoiced: 4 documents, 1,000.00 EUR, 3,577.85 USD*\n"
                           "2022-01 invoiced: 4 documents")
    assert "TST-2022-0002" not in text   # the document list is for the e-mail


def test_webhook_text_is_escaped_for_slack(webhook, tmp_path):
    warnings = []
    notifier(org_with(webhook={"url_env": "TEST_WEBHOOK_URL"}), tmp_path, warnings).month_failed(
        "2022-01", "hub <alpha> & <!channel>")
    assert webhook.texts() == ["*[hub-billing] 2022-01 failed*\nhub &lt;alpha&gt; &amp; &lt;!channel&gt;"]


def test_webhook_500_then_200_is_retried_and_delivered(webhook, tmp_path):
    webhook.statuses = [500]
    warnings = []
    notifier(org_with(webhook={"url_env": "TEST_WEBHOOK_URL"}), tmp_path, warnings).month_failed("2022-01", "x")
    assert len(webhook.requests) == 2 and webhook.requests[0] == webhook.requests[1]
    assert warnings == []


def test_webhook_429_with_retry_after_is_retried(webhook, tmp_path):
    webhook.statuses = [429, 503]
    warnings = []
    notifier(org_with(webhook={"url_env": "TEST_WEBHOOK_URL"}), tmp_path, warnings).month_failed("2022-01", "x")
    assert len(webhook.requests) == 3 and warnings == []


def test_a_webhook_that_keeps_failing_is_a_warning_without_its_url(webhook, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    webhook.statuses = [500, 502, 500]
    warnings = []
    notifier(org_with(webhook={"url_env": "TEST_WEBHOOK_URL"}), tmp_path, warnings).month_failed("2022-01", "x")
    assert len(webhook.requests) == 3
    assert warnings == ["notification not sent by webhook: the webhook in $TEST_WEBHOOK_URL answered 500 try later "
                        "(3 attempts)"]
    out = capsys.readouterr()
    assert "secretTOKEN" not in out.out + out.err + caplog.text + "".join(warnings)


def test_a_client_error_is_not_retried(webhook, tmp_path):
    webhook.statuses = [404]
    warnings = []
    notifier(org_with(webhook={"url_env": "TEST_WEBHOOK_URL"}), tmp_path, warnings).month_failed("2022-01", "x")
    assert len(webhook.requests) == 1
    assert warnings == ["notification not sent by webhook: the webhook in $TEST_WEBHOOK_URL answered 404 no_service"]


def test_webhook_url_problems_name_the_variable_only(monkeypatch, tmp_path):
    warnings = []
    org = org_with(webhook={"url_env": "TEST_WEBHOOK_URL"})
    monkeypatch.setattr("billing.notify.WEBHOOK_RETRY_DELAYS", (0.0, 0.0))
    monkeypatch.delenv("TEST_WEBHOOK_URL", raising=False)
    notifier(org, tmp_path, warnings).month_failed("2022-01", "x")
    monkeypatch.setenv("TEST_WEBHOOK_URL", "http://hooks.example.org/services/T0/B0/s3cretTOKEN")
    notifier(org, tmp_path, warnings).month_failed("2022-01", "x")
    monkeypatch.setenv("TEST_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}/services/s3cretTOKEN")
    notifier(org, tmp_path, warnings).month_failed("2022-01", "x")
    assert warnings == [
        "notification not sent by webhook: the webhook in $TEST_WEBHOOK_URL: the environment variable is not set "
        "(or empty)",
        "notification not sent by webhook: the webhook in $TEST_WEBHOOK_URL: not an https:// URL (the value is not "
        "shown: it is a secret)",
        "notification not sent by webhook: the webhook in $TEST_WEBHOOK_URL could not be reached (Connection "
        "refused) (3 attempts)"]


def test_only_the_configured_events_are_sent(webhook, tmp_path):
    warnings = []
    n = notifier(org_with(webhook={"url_env": "TEST_WEBHOOK_URL"}, on=["incomplete"]), tmp_path, warnings)
    n.month_succeeded(month_result())
    n.month_failed("2022-01", "broken")
    n.month_incomplete("2022-02", "2022-02 is incomplete: aws: throttled")
    assert webhook.texts() == ["*[hub-billing] 2022-02 is incomplete: nothing finalized, run it again later*\n"
                               "2022-02 is incomplete: aws: throttled"]


def test_a_refused_recipient_is_a_warning_and_the_others_get_it(smtp_server, tmp_path):
    warnings = []
    org = org_with(smtp_server.port, email={"to": ["finance@example.org", REFUSED]})
    notifier(org, tmp_path, warnings).month_failed("2022-01", "x")
    assert smtp_server.only_message().recipients == ["finance@example.org"]
    assert warnings == [f"notification e-mail not delivered to {REFUSED}: the server answered 550 5.1.1 no such "
                        "user here; the other recipients got it"]


def test_a_mail_server_that_is_down_is_a_warning_and_the_webhook_still_goes(webhook, monkeypatch, tmp_path):
    monkeypatch.setenv("TEST_SMTP_USER", "u")
    monkeypatch.setenv("TEST_SMTP_PASSWORD", PASSWORD)
    warnings = []
    port = free_port()
    org = org_with(port, email={"to": ["finance@example.org"]}, webhook={"url_env": "TEST_WEBHOOK_URL"})
    notifier(org, tmp_path, warnings).month_failed("2022-01", "x")
    assert warnings == [f"notification not sent by e-mail: the mail server 127.0.0.1:{port}: cannot connect "
                        "(Connection refused)"]
    assert len(webhook.requests) == 1


def test_secrets_are_scrubbed_from_what_is_sent(smtp_server, webhook, tmp_path):
    warnings = []
    org = org_with(smtp_server.port, email={"to": ["finance@example.org"]}, webhook={"url_env": "TEST_WEBHOOK_URL"})
    notifier(org, tmp_path, warnings).month_failed(
        "2022-01", f"ledger postgresql://billing:dbpass@db/ledger refused; {PASSWORD}; {webhook.url}")
    body = smtp_server.only_message().message.get_body(("plain",)).get_content()
    for text in (body, webhook.texts()[0]):
        assert "postgresql://billing:***@db/ledger refused; ***; ***" in text
        assert "dbpass" not in text and PASSWORD not in text and "secretTOKEN" not in text


def test_failures_are_classified_and_notified_once(webhook, tmp_path):
    warnings = []
    n = notifier(org_with(webhook={"url_env": "TEST_WEBHOOK_URL"}), tmp_path, warnings)
    source = SourceError("aws_cost_explorer", "throttled")
    assert n.month_error("2022-03", source).startswith("2022-03 is incomplete: aws_cost_explorer: throttled.")
    n.month_error("2022-03", source)   # already notified
    n.month_error("2022-04", FinalizedInvoiceChanged("2022-04", ["community alpha: ..."]))
    n.month_error("2022-05", ZeroDivisionError("division by zero"))
    subjects = [t.splitlines()[0] for t in webhook.texts()]
    assert subjects == ["*[hub-billing] 2022-03 is incomplete: nothing finalized, run it again later*",
                        "*[hub-billing] 2022-04 failed*", "*[hub-billing] 2022-05 failed*"]
    assert webhook.texts()[2].endswith("2022-05 could not be invoiced: internal error: ZeroDivisionError: division "
                                       "by zero")


def test_a_backfill_sends_one_summary_and_one_message_per_failed_month(webhook, tmp_path):
    warnings = []
    n = notifier(org_with(webhook={"url_env": "TEST_WEBHOOK_URL"}), tmp_path, warnings)
    with n.run(["2022-01", "2022-02", "2022-03"]) as report:
        for month in ("2022-01", "2022-02", "2022-03"):
            try:
                with report.month(month):
                    if month == "2022-02":
                        raise SourceError("aws", "throttled")
                    result = month_result(month)
                report.succeeded(result)
            except SourceError:
                pass
    first, summary = webhook.texts()
    assert first.startswith("*[hub-billing] 2022-02 is incomplete")
    assert summary.splitlines()[:6] == [
        "*[hub-billing] Backfill 2022-01 to 2022-03: 2 of 3 month(s) invoiced*",
        "Backfill 2022-01 to 2022-03: 2 of 3 month(s) invoiced.",
        "  2022-01: 4 documents, 3 new; 1,000.00 EUR, 3,577.85 USD",
        "  2022-03: 4 documents, 3 new; 1,000.00 EUR, 3,577.85 USD",
        "Not invoiced:",
        "  - 2022-02 is incomplete: aws: throttled. No invoice was finalized from partial data; run the month again "
        "when the source answers."]
    assert "Totals of these months' documents: 2,000.00 EUR, 7,155.70 USD." in summary


def test_a_backfill_stopped_by_an_error_says_where(webhook, tmp_path):
    n = notifier(org_with(webhook={"url_env": "TEST_WEBHOOK_URL"}), tmp_path, [])
    with pytest.raises(RuntimeError):
        with n.run(["2022-01", "2022-02", "2022-03"]) as report:
            with report.month("2022-01"):
                result = month_result("2022-01")
            report.succeeded(result)
            with report.month("2022-02"):
                raise RuntimeError("disk full")
    failed, summary = webhook.texts()
    assert failed == ("*[hub-billing] 2022-02 failed*\n2022-02 could not be invoiced: internal error: RuntimeError: "
                      "disk full")
    assert summary.startswith("*[hub-billing] Backfill 2022-01 to 2022-03: 1 of 2 month(s) invoiced; stopped at "
                              "2022-02, later months were not run*")


def test_without_notifications_nothing_is_sent(tmp_path):
    org = parse_organization(small_org_data(), "org.yaml")
    Notifier(org, tmp_path, warn=pytest.fail).month_succeeded(month_result())
