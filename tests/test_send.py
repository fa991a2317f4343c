"""`billing send` against a real SMTP server on loopback (aiosmtpd, STARTTLS, a login): each finalized document
of the month once, with its PDF, to the party's billing contact and the configured copies; a refused recipient, a
missing PDF, --resend, --dry-run, --party, templates that cannot inject headers, and no password anywhere."""
from __future__ import annotations

import email
import email.policy
import logging
import shutil

import pytest
import yaml

from billing import ledger
from billing.cli import main
from billing.config import parse_organization
from billing.errors import ConfigError
from billing.message_templates import header_text
from helpers import small_focus_rows, small_org_data, write_focus_csv
from notify_servers import PASSWORD, REFUSED, USER
from test_object_store import keys, s3, s3_server  # noqa: F401 (fixtures: moto's S3 on loopback)

JANUARY = ["TST-2022-0001", "TST-ST-2022-0001", "TST-2022-0002"]   # alpha's invoice, beta's statement, grant's


def smtp_block(port: int) -> dict:
    return {"host": "127.0.0.1", "port": port, "from": "Hub Billing <billing@example.org>",
            "username_env": "TEST_SMTP_USER", "password_env": "TEST_SMTP_PASSWORD", "timeout": 5}


@pytest.fixture(scope="module")
def invoiced(tmp_path_factory):
    """January of the small organization, finalized once (PDFs, ledger) for the whole module."""
    folder = tmp_path_factory.mktemp("invoiced")
    write_focus_csv(folder / "focus" / "2022-01.csv", small_focus_rows()[:-1])
    (folder / "org.yaml").write_text(yaml.safe_dump(small_org_data(), sort_keys=False))
    assert main(["run", "--month", "2022-01", "--org", str(folder / "org.yaml"), "--out", str(folder / "out"),
                 "--workers", "1", "--issue-date", "closing-day"]) == 0
    return folder


@pytest.fixture()
def org_dir(invoiced, tmp_path):
    """A copy of the invoiced month, for one test to send from."""
    shutil.copytree(invoiced, tmp_path / "org")
    return tmp_path / "org"


def configure(folder, port: int, sending: dict | None = None, contacts: dict | None = None, **extra) -> None:
    """Rewrite the configuration: the mail server, a sending block, other billing contacts for some parties."""
    data = small_org_data(smtp=smtp_block(port), **extra)
    if sending is not None:
        data["sending"] = sending
    for entity in data["communities"] + data["funders"]:
        if contacts and entity["id"] in contacts:
            entity["billing_contact"] = {**entity["billing_contact"], **contacts[entity["id"]]}
    (folder / "org.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def send(folder, *args) -> int:
    return main(["send", "--org", str(folder / "org.yaml"), "--out", str(folder / "out"), "--month", "2022-01",
                 *args])


def events(folder, number: str, kind: str = "sent") -> list:
    engine = ledger.open_ledger(f"sqlite:///{folder / 'out' / 'ledger.db'}")
    try:
        return [e for e in ledger.history(engine, number) if e.event == kind]
    finally:
        engine.dispose()


def by_subject_number(server) -> dict:
    return {r.message["Subject"].split()[-2]: r for r in server.received}


def test_each_document_goes_once_with_its_pdf_and_is_recorded(smtp_server, org_dir, capsys):
    configure(org_dir, smtp_server.port, sending={"cc": ["ar@example.org"], "reply_to": "ar@example.org"})
    assert send(org_dir) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "2022-01: 3 sent, 0 skipped, 0 failed"
    assert smtp_server.logins == [(USER, PASSWORD)] * 3
    got = by_subject_number(smtp_server)
    assert sorted(got) == sorted(JANUARY)
    invoice = got["TST-2022-0001"]
    assert sorted(invoice.recipients) == ["ar@example.org", "billing@example.edu"]
    assert invoice.message["To"] == "Billing Office <billing@example.edu>"
    assert invoice.message["Cc"] == "ar@example.org" and invoice.message["Reply-To"] == "ar@example.org"
    assert invoice.message["Subject"] == "Test Hubs Inc.: Invoice TST-2022-0001 (2022-01)"
    body = invoice.message.get_body(("plain",)).get_content()
    assert "please find attached invoice TST-2022-0001 from Test Hubs Inc. to Alpha University for 2022-01." in body
    assert "Total due: 2,022.60 USD, by 2022-03-08." in body
    [pdf] = list(invoice.message.iter_attachments())
    assert pdf.get_filename() == "TST-2022-0001.pdf"
    assert pdf.get_content() == (org_dir / "out" / "2022-01" / "invoices" / "TST-2022-0001.pdf").read_bytes()
    assert "Nothing is due for this month: 0.00 USD." in got["TST-ST-2022-0001"].message.get_body(
        ("plain",)).get_content()
    [sent] = events(org_dir, "TST-2022-0001")
    assert sent.details["message_id"] == invoice.message["Message-ID"]
    assert sent.details["to"] == ["billing@example.edu"] and sent.details["cc"] == ["ar@example.org"]
    assert sent.details["refused"] == {} and len(sent.details["pdf_sha256"]) == 64
    assert f"2022-01: sent TST-2022-0001 to Billing Office <billing@example.edu>, cc ar@example.org " \
           f"{invoice.message['Message-ID']}" in out
    main(["history", "TST-2022-0001", "--org", str(org_dir / "org.yaml"), "--out", str(org_dir / "out")])
    assert "sent      by" in capsys.readouterr().out


def test_a_second_send_skips_what_was_sent_and_resend_sends_it_again(smtp_server, org_dir, capsys):
    configure(org_dir, smtp_server.port)
    assert send(org_dir) == 0
    first = {r.message["Message-ID"] for r in smtp_server.received}
    capsys.readouterr()
    assert send(org_dir) == 0
    out = capsys.readouterr().out
    assert len(smtp_server.received) == 3
    assert out.splitlines()[-1] == "2022-01: 0 sent, 3 skipped, 0 failed"
    assert "2022-01: skipped TST-2022-0001 already sent on " in out and "--resend sends it again" in out
    assert send(org_dir, "--resend") == 0
    assert len(smtp_server.received) == 6
    again = {r.message["Message-ID"] for r in smtp_server.received[3:]}
    assert not again & first
    assert [e.details["resend"] for e in events(org_dir, "TST-2022-0002")] == [False, True]


def test_a_refused_billing_contact_fails_that_document_only(smtp_server, org_dir, capsys):
    configure(org_dir, smtp_server.port, sending={"cc": ["ar@example.org"]}, contacts={"beta": {"email": REFUSED}})
    assert send(org_dir) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == "2022-01: 2 sent, 0 skipped, 1 failed"
    assert ("2022-01: FAILED TST-ST-2022-0001 not sent: the mail server refused the billing contact "
            f"{REFUSED} (550 5.1.1 no such user here); the copies to ar@example.org were delivered") in captured.err
    assert sorted(by_subject_number(smtp_server)) == sorted(JANUARY)   # the copy of beta's went out
    assert events(org_dir, "TST-ST-2022-0001") == []
    [failed] = events(org_dir, "TST-ST-2022-0001", "send_failed")
    assert failed.details["refused"] == {REFUSED: "550 5.1.1 no such user here"}
    # Fixed in the configuration, the next send delivers the failed one and skips the others.
    configure(org_dir, smtp_server.port, sending={"cc": ["ar@example.org"]})
    assert send(org_dir) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2022-01: 1 sent, 2 skipped, 0 failed"
    assert len(events(org_dir, "TST-ST-2022-0001")) == 1


def test_a_missing_pdf_fails_that_document_and_the_others_go(smtp_server, org_dir, capsys):
    configure(org_dir, smtp_server.port)
    (org_dir / "out" / "2022-01" / "invoices" / "TST-2022-0002.pdf").unlink()
    assert send(org_dir) == 1
    captured = capsys.readouterr()
    assert (f"2022-01: FAILED TST-2022-0002 not sent: its PDF {org_dir / 'out' / '2022-01' / 'invoices' / 'TST-2022-0002.pdf'} "
            "does not exist; run `billing run --month 2022-01` again to produce it") in captured.err
    assert captured.out.splitlines()[-1] == "2022-01: 2 sent, 0 skipped, 1 failed"
    assert sorted(by_subject_number(smtp_server)) == ["TST-2022-0001", "TST-ST-2022-0001"]


def test_dry_run_writes_the_messages_and_sends_and_records_nothing(smtp_server, org_dir, capsys):
    configure(org_dir, smtp_server.port, sending={"cc": ["ar@example.org"]})
    assert send(org_dir, "--dry-run") == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "2022-01: 3 written to the outbox (dry run), 0 skipped, 0 failed"
    outbox = org_dir / "out" / "2022-01" / "outbox"
    assert sorted(p.name for p in outbox.iterdir()) == sorted(f"{n}.eml" for n in JANUARY)
    message = email.message_from_bytes((outbox / "TST-2022-0001.eml").read_bytes(), policy=email.policy.default)
    assert message["To"] == "Billing Office <billing@example.edu>" and message["Cc"] == "ar@example.org"
    [pdf] = list(message.iter_attachments())
    assert pdf.get_content() == (org_dir / "out" / "2022-01" / "invoices" / "TST-2022-0001.pdf").read_bytes()
    assert smtp_server.received == [] and smtp_server.logins == []
    assert all(events(org_dir, n) == [] for n in JANUARY)
    assert f"2022-01: would send TST-2022-0001 to Billing Office <billing@example.edu>, cc ar@example.org: " \
           f"{outbox / 'TST-2022-0001.eml'}" in out


def test_party_sends_one_partys_documents(smtp_server, org_dir, capsys):
    configure(org_dir, smtp_server.port)
    assert send(org_dir, "--party", "grant") == 0
    assert sorted(by_subject_number(smtp_server)) == ["TST-2022-0002"]
    assert send(org_dir, "--party", "community:alpha") == 0
    assert sorted(by_subject_number(smtp_server)) == ["TST-2022-0001", "TST-2022-0002"]
    capsys.readouterr()
    assert send(org_dir, "--party", "gamma") == 2
    assert capsys.readouterr().err.strip() == ("error: --party 'gamma': no such community or funder; communities: "
                                               "alpha, beta; funders: grant")
    assert send(org_dir, "--party", "funder:alpha") == 2


def test_templates_cannot_inject_headers_and_values_are_not_templates(smtp_server, org_dir):
    sending = {"subject": "{{ document.number }} for {{ party.contact }}",
               "body": "Hello {{ party.contact }}, {{ document.title|upper }} {{ document.amount }} {{ document.currency }}"}
    configure(org_dir, smtp_server.port, sending=sending,
              contacts={"alpha": {"name": "Billing {{ 7*7 }}\nBcc: evil@example.net\u2028X-Evil: 1"}})
    assert send(org_dir, "--party", "alpha") == 0
    got = smtp_server.only_message()
    assert got.recipients == ["billing@example.edu"]
    assert got.message["Bcc"] is None and got.message["X-Evil"] is None
    assert got.message["Subject"] == "TST-2022-0001 for Billing {{ 7*7 }} Bcc: evil@example.net X-Evil: 1"
    assert got.message["To"].addresses[0].addr_spec == "billing@example.edu"
    body = got.message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert body.startswith("Hello Billing {{ 7*7 }}\nBcc: evil@example.net\u2028X-Evil: 1, INVOICE 2022.60 USD")


def test_header_text_flattens_every_line_break_and_control_character():
    assert header_text(" a\r\nb\u2028c\x00d\te\u202e f ") == "a b c d e f"
    assert len(header_text("x" * 1000)) == 300


@pytest.mark.parametrize("sending, expected", [
    ({"subject": "{{ document.nmber }}"}, "sending.subject: the template cannot be rendered for an invoice: "
                                          "'dict object' has no attribute 'nmber' (the values it can use: document."),
    ({"body": "{% if %}"}, "sending.body: not a valid template: Expected an expression, got 'end of statement block' "
                           "(line 1)"),
    ({"body": "{{ issuer.__class__.__mro__ }}"}, "sending.body: the template cannot be rendered for an invoice: "
                                                 "access to attribute '__class__' of 'dict' object is unsafe."),
    ({"subject": "{% if false %}x{% endif %}"}, "sending.subject: the template renders an empty subject"),
    ({"cc": ["not-an-address"]}, "sending.cc[0]: Value error, not an email address"),
    ({"reply_to": "a@example.org\nBcc: b@example.org"}, "sending.reply_to: not one email address"),
])
def test_a_wrong_sending_block_is_refused_at_load_naming_the_field(sending, expected, tmp_path):
    with pytest.raises(ConfigError) as err:
        parse_organization(small_org_data(smtp=smtp_block(25), sending=sending), "org.yaml", tmp_path)
    assert f"org.yaml: {expected}".replace("Value error, ", "") in str(err.value)


def test_sending_needs_the_smtp_block(tmp_path):
    with pytest.raises(ConfigError, match="sending: sending documents needs the top-level smtp block"):
        parse_organization(small_org_data(sending={"cc": ["a@example.org"]}), "org.yaml", tmp_path)
    (tmp_path / "org.yaml").write_text(yaml.safe_dump(small_org_data()))
    assert main(["send", "--org", str(tmp_path / "org.yaml"), "--out", str(tmp_path / "out"), "--month",
                 "2022-01"]) == 2


def test_no_password_in_any_output_and_a_missing_one_is_named(smtp_server, org_dir, capsys, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    configure(org_dir, smtp_server.port)
    assert send(org_dir, "-v") == 0
    assert send(org_dir, "--resend", "-v") == 0
    captured = capsys.readouterr()
    everything = captured.out + captured.err + caplog.text
    everything += "".join(str(e.details) for n in JANUARY for e in events(org_dir, n))
    assert PASSWORD not in everything
    monkeypatch.delenv("TEST_SMTP_PASSWORD")
    assert send(org_dir, "--resend") == 2
    assert capsys.readouterr().err.strip() == ("error: smtp.password_env: the environment variable "
                                               "$TEST_SMTP_PASSWORD is not set (or empty); billing send logs in to "
                                               "the mail server with it")
    assert len(smtp_server.received) == 6


def test_documents_cancelled_before_they_were_sent_are_not_sent(smtp_server, org_dir, capsys):
    configure(org_dir, smtp_server.port)
    assert main(["void", "TST-2022-0001", "--reason", "wrong customer", "--org", str(org_dir / "org.yaml"),
                 "--out", str(org_dir / "out"), "--workers", "1"]) == 0
    capsys.readouterr()
    assert send(org_dir) == 0
    out = capsys.readouterr().out
    assert "skipped TST-2022-0001 voided before it was ever sent: the party never saw it, so it is not sent now" in out
    assert (f"skipped TST-CN-{_year()}-0001 it corrects TST-2022-0001, which was never sent, so the party needs no "
            "credit note") in out
    assert sorted(by_subject_number(smtp_server)) == ["TST-2022-0002", "TST-ST-2022-0001"]


def test_the_credit_note_of_a_document_that_was_sent_is_sent(smtp_server, org_dir, capsys):
    configure(org_dir, smtp_server.port)
    assert send(org_dir, "--party", "grant") == 0
    assert main(["void", "TST-2022-0002", "--reason", "paid by another grant", "--org", str(org_dir / "org.yaml"),
                 "--out", str(org_dir / "out"), "--workers", "1"]) == 0
    capsys.readouterr()
    assert send(org_dir, "--party", "grant") == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2022-01: 1 sent, 1 skipped, 0 failed"
    note = smtp_server.received[-1].message
    assert note["Subject"] == f"Test Hubs Inc.: Credit note TST-CN-{_year()}-0001 (2022-01)"
    assert "It credits 1,555.25 USD to TST-2022-0002." in note.get_body(("plain",)).get_content()


def _year() -> int:
    import datetime as dt

    return dt.date.today().year


def test_sent_events_on_each_ledger(ledger_url):
    import datetime as dt

    engine = ledger.open_ledger(ledger_url)
    try:
        at = dt.datetime(2026, 11, 29, 9, 14, tzinfo=dt.timezone.utc)
        ledger.record_event(engine, "TST-2022-0001", "sent", actor="maria", now=at, message_id="<1@x>", to=["a@x.org"])
        ledger.record_event(engine, "TST-2022-0001", "sent", actor="maria", now=at + dt.timedelta(hours=1),
                            message_id="<2@x>", to=["a@x.org"])
        ledger.record_event(engine, "TST-2022-0002", "send_failed", actor="maria", now=at, message_id="<3@x>")
        latest = ledger.latest_events(engine, ["TST-2022-0001", "TST-2022-0002", "TST-2022-0003"], "sent")
    finally:
        engine.dispose()
    assert list(latest) == ["TST-2022-0001"]
    assert latest["TST-2022-0001"].details == {"message_id": "<2@x>", "to": ["a@x.org"]}


def test_pdfs_in_an_object_store_are_read_from_it(smtp_server, s3, tmp_path, capsys):
    """Outputs in S3 (moto on loopback), the local cache gone: the PDFs come from the store; the outbox goes there."""
    write_focus_csv(tmp_path / "focus" / "2022-01.csv", small_focus_rows()[:-1])
    configure(tmp_path, smtp_server.port)
    common = ["--org", str(tmp_path / "org.yaml"), "--out", "s3://billing-outputs/org",
              "--ledger", f"sqlite:///{tmp_path / 'ledger.db'}"]
    assert main(["run", "--month", "2022-01", "--workers", "1", "--issue-date", "closing-day", *common]) == 0
    shutil.rmtree(tmp_path / "cache")
    assert main(["send", "--month", "2022-01", "--dry-run", *common]) == 0
    assert {k for k in keys(s3, "org/2022-01/outbox/")} == {f"{n}.eml" for n in JANUARY}
    assert main(["send", "--month", "2022-01", *common]) == 0
    [pdf] = list(by_subject_number(smtp_server)["TST-2022-0001"].message.iter_attachments())
    assert pdf.get_content() == s3.get_object(Bucket="billing-outputs", Key="org/2022-01/invoices/TST-2022-0001.pdf")[
        "Body"].read()
    s3.delete_object(Bucket="billing-outputs", Key="org/2022-01/invoices/TST-2022-0002.pdf")
    shutil.rmtree(tmp_path / "cache")
    capsys.readouterr()
    assert main(["send", "--month", "2022-01", "--party", "grant", "--resend", *common]) == 1
    assert ("FAILED TST-2022-0002 not sent: its PDF s3://billing-outputs/org/2022-01/invoices/TST-2022-0002.pdf does "
            "not exist") in capsys.readouterr().err
