"""billing.mail against a real SMTP server on loopback (aiosmtpd): STARTTLS with a self-signed certificate the
test makes, TLS from the start, a login from the environment, a refused recipient, and one-line errors that never
show the password."""
import logging

import pytest

from billing.config import SmtpServer
from billing.mail import Attachment, MailError, send
from notify_servers import PASSWORD, REFUSED, USER, start_smtp


def smtp_config(server, **overrides) -> SmtpServer:
    data = {"host": "127.0.0.1", "port": server.port, "from": "Hub Billing <billing@example.org>",
            "username_env": "TEST_SMTP_USER", "password_env": "TEST_SMTP_PASSWORD", "timeout": 10, **overrides}
    return SmtpServer.model_validate(data)


def test_starttls_login_message_id_date_and_attachment(smtp_server):
    sent = send(smtp_config(smtp_server), to=["finance@example.edu"], cc=["ops@example.org"],
                subject="Invoice TST-2022-0001", body="Dear Alpha,\n\nyour invoice is attached.\n",
                attachments=[Attachment("TST-2022-0001.pdf", b"%PDF-1.7 fake")])
    got = smtp_server.only_message()
    assert smtp_server.logins == [(USER, PASSWORD)]
    assert got.sender == "billing@example.org"
    assert sorted(got.recipients) == ["finance@example.edu", "ops@example.org"]
    assert sent.accepted == ("finance@example.edu", "ops@example.org") and sent.refused == {}
    assert got.message["Message-ID"] == sent.message_id and sent.message_id.endswith("@example.org>")
    assert got.message["Date"] and got.message["From"] == "Hub Billing <billing@example.org>"
    assert got.message.get_body(("plain",)).get_content().startswith("Dear Alpha,")
    [pdf] = list(got.message.iter_attachments())
    assert pdf.get_filename() == "TST-2022-0001.pdf" and pdf.get_content() == b"%PDF-1.7 fake"
    assert pdf.get_content_type() == "application/pdf"


def test_a_refused_recipient_is_reported_and_the_others_get_the_message(smtp_server):
    sent = send(smtp_config(smtp_server), to=["finance@example.edu", REFUSED], subject="s", body="b")
    assert smtp_server.only_message().recipients == ["finance@example.edu"]
    assert sent.accepted == ("finance@example.edu",)
    assert sent.refused == {REFUSED: "550 5.1.1 no such user here"}


def test_every_recipient_refused_is_one_line_error(smtp_server):
    with pytest.raises(MailError) as err:
        send(smtp_config(smtp_server), to=[REFUSED], subject="s", body="b")
    assert str(err.value) == (f"the mail server 127.0.0.1:{smtp_server.port} refused every recipient: "
                              f"{REFUSED} (550 5.1.1 no such user here)")
    assert smtp_server.received == []


def test_implicit_tls(tls_certificate, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_certificate[0]))
    monkeypatch.setenv("TEST_SMTP_USER", USER)
    monkeypatch.setenv("TEST_SMTP_PASSWORD", PASSWORD)
    server = start_smtp(tls_certificate, implicit_tls=True)
    try:
        config = smtp_config(server, ssl=True)
        assert config.starttls is False and config.ssl
        send(config, to=["finance@example.edu"], subject="over TLS", body="b")
        assert server.only_message().message["Subject"] == "over TLS"
        assert server.logins == [(USER, PASSWORD)]
    finally:
        server.controller.stop()


def test_wrong_password_never_shows_it(smtp_server, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong-pw-Kx7-secret")
    with pytest.raises(MailError) as err:
        send(smtp_config(smtp_server), to=["finance@example.edu"], subject="s", body="b")
    text = str(err.value)
    assert "\n" not in text and "the login was refused (535" in text
    assert "$TEST_SMTP_USER" in text and "$TEST_SMTP_PASSWORD" in text
    assert "wrong-pw-Kx7-secret" not in text + caplog.text
    assert smtp_server.received == []


def test_an_unset_variable_is_named_before_connecting(smtp_server, monkeypatch):
    monkeypatch.delenv("TEST_SMTP_PASSWORD")
    with pytest.raises(MailError, match=r"^smtp.password_env: the environment variable \$TEST_SMTP_PASSWORD is "
                                        r"not set \(or empty\)$"):
        send(smtp_config(smtp_server), to=["finance@example.edu"], subject="s", body="b")
    assert smtp_server.logins == []


def test_an_untrusted_certificate_is_refused(smtp_server, monkeypatch, tmp_path):
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-such-bundle.pem"))   # the self-signed cert is unknown
    with pytest.raises(MailError, match="its TLS certificate is not trusted") as err:
        send(smtp_config(smtp_server), to=["finance@example.edu"], subject="s", body="b")
    assert PASSWORD not in str(err.value) and smtp_server.logins == []


def test_a_server_without_starttls_is_refused_when_starttls_is_on(tls_certificate):
    server = start_smtp(tls_certificate, starttls=False)
    try:
        with pytest.raises(MailError, match="does not offer STARTTLS"):
            send(smtp_config(server, username_env=None, password_env=None), to=["a@example.org"],
                 subject="s", body="b")
        # A relay on a trusted network, without a login, may be used in plain text when the configuration says so.
        send(smtp_config(server, username_env=None, password_env=None, starttls=False), to=["a@example.org"],
             subject="plain", body="b")
        assert server.only_message().message["Subject"] == "plain"
    finally:
        server.controller.stop()


def test_nothing_listening_is_one_line():
    from notify_servers import free_port

    port = free_port()
    with pytest.raises(MailError, match=rf"^the mail server 127.0.0.1:{port}: cannot connect \(Connection refused\)$"):
        send(SmtpServer.model_validate({"host": "127.0.0.1", "port": port, "from": "b@example.org"}),
             to=["a@example.org"], subject="s", body="b")
