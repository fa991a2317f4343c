"""Sending e-mail through the organization's mail server (`smtp:` in the configuration).

Notifications use it today; it is built to send invoices too: attachments,
the Message-ID returned for the record, and recipients refused one by one
without losing the others. The login is read from the environment variables
the configuration names, at the moment of sending, and never logged or put in
an error message. Every failure is a `MailError` with a one-line message.
"""
from __future__ import annotations

import email.policy
import email.utils
import os
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Sequence

from billing.config import SmtpServer
from billing.errors import BillingError


# Lines up to RFC 5322's hard limit: the standard library folds a long Subject right after "Subject:", which
# readers then show with a leading space.
POLICY = email.policy.default.clone(max_line_length=998)


class MailError(BillingError):
    """A message could not be sent; the text says why in one line, without any secret."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    content_type: str = "application/pdf"


@dataclass(frozen=True)
class Sent:
    """What the server accepted: the message's id, and each refused recipient with the server's answer."""

    message_id: str
    accepted: tuple[str, ...]
    refused: dict[str, str] = field(default_factory=dict)


def environment_secret(variable: str, what: str) -> str:
    """The value of an environment variable the configuration names; MailError if it is not set."""
    value = os.environ.get(variable)
    if not value:
        raise MailError(f"{what}: the environment variable ${variable} is not set (or empty)")
    return value


def build_message(smtp: SmtpServer, *, to: Sequence[str], subject: str, body: str, cc: Sequence[str] = (),
                  attachments: Sequence[Attachment] = (), reply_to: str | None = None) -> EmailMessage:
    """A plain-text message from the configured sender, with a Date and a new Message-ID."""
    message = EmailMessage(policy=POLICY)
    message["From"] = smtp.sender
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    if reply_to:
        message["Reply-To"] = reply_to
    message["Subject"] = subject
    message["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
    domain = email.utils.parseaddr(smtp.sender)[1].rpartition("@")[2]
    message["Message-ID"] = email.utils.make_msgid(domain=domain)
    message.set_content(body)
    for item in attachments:
        maintype, _, subtype = item.content_type.partition("/")
        message.add_attachment(item.content, maintype=maintype, subtype=subtype, filename=item.filename)
    return message


def send(smtp: SmtpServer, **message_parts) -> Sent:
    """Build a message (see `build_message`) and send it."""
    return send_message(smtp, build_message(smtp, **message_parts))


def send_message(smtp: SmtpServer, message: EmailMessage) -> Sent:
    """Send through the configured server: TLS as configured, a login only when username_env is given.

    Recipients the server refuses are returned in `Sent.refused`; the others
    get the message. If every recipient is refused, or anything else fails,
    MailError says why.
    """
    login = _login(smtp)
    recipients = [a for _, a in email.utils.getaddresses(message.get_all("To", []) + message.get_all("Cc", []))]
    try:
        refused = _deliver(smtp, message, login)
    except smtplib.SMTPRecipientsRefused as err:
        raise MailError(f"{_server(smtp)} refused every recipient: {_refusals(err.recipients)}") from None
    except MailError:
        raise
    except Exception as err:  # noqa: BLE001 - every failure becomes one line, with no secret in it
        raise MailError(_scrub(f"{_server(smtp)}: {_why(err, smtp)}", login)) from None
    answers = {address: _answer(*reply) for address, reply in refused.items()}
    return Sent(message["Message-ID"], tuple(a for a in recipients if a not in refused), answers)


def _login(smtp: SmtpServer) -> tuple[str, str] | None:
    if smtp.username_env is None or smtp.password_env is None:
        return None
    return (environment_secret(smtp.username_env, "smtp.username_env"),
            environment_secret(smtp.password_env, "smtp.password_env"))


def _deliver(smtp: SmtpServer, message: EmailMessage, login: tuple[str, str] | None) -> dict:
    context = ssl.create_default_context()
    if smtp.ssl:
        connection = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout, context=context)
    else:
        connection = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
    with connection:
        connection.ehlo()
        if smtp.starttls:
            if not connection.has_extn("starttls"):
                raise MailError(f"{_server(smtp)} does not offer STARTTLS; use its TLS port with ssl: true, or "
                                "set starttls: false only for a relay on a trusted network (and no login)")
            connection.starttls(context=context)
            connection.ehlo()
        if login is not None:
            connection.login(*login)
        return connection.send_message(message)


def _server(smtp: SmtpServer) -> str:
    return f"the mail server {smtp.host}:{smtp.port}"


def _answer(code: int, text: bytes | str) -> str:
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return " ".join(f"{code} {text}".split())


def _refusals(recipients: dict) -> str:
    return "; ".join(f"{address} ({_answer(*reply)})" for address, reply in recipients.items())


def _why(err: Exception, smtp: SmtpServer) -> str:
    """What went wrong, in words: the server's answer, or the connection's fault."""
    if isinstance(err, smtplib.SMTPAuthenticationError):
        return (f"the login was refused ({_answer(err.smtp_code, err.smtp_error)}); check the user in "
                f"${smtp.username_env} and the password in ${smtp.password_env}")
    if isinstance(err, smtplib.SMTPSenderRefused):
        return f"the sender {err.sender} was refused ({_answer(err.smtp_code, err.smtp_error)})"
    if isinstance(err, smtplib.SMTPResponseException):
        return f"the server answered {_answer(err.smtp_code, err.smtp_error)}"
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"its TLS certificate is not trusted ({err.verify_message})"
    if isinstance(err, ssl.SSLError):
        return f"TLS failed ({err.reason or err})"
    if isinstance(err, TimeoutError):
        return f"no answer within {smtp.timeout} s"
    if isinstance(err, smtplib.SMTPException):
        return " ".join(str(err).split())
    if isinstance(err, OSError):
        return f"cannot connect ({err.strerror or err})"
    return " ".join(f"{type(err).__name__}: {err}".split())


def _scrub(text: str, login: tuple[str, str] | None) -> str:
    """Never let the password through, whatever a server or library put in its message."""
    if login is not None and login[1]:
        text = text.replace(login[1], "***")
    return text
