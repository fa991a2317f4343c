"""Real servers on loopback for the notification tests: an SMTP server (aiosmtpd) and a webhook listener.

The SMTP server speaks STARTTLS (or TLS from the start) with a self-signed
certificate made here for 127.0.0.1, accepts one login, and refuses the
recipient `REFUSED`. The webhook listener answers with the statuses it is
given, then 200, and keeps every request.
"""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

USER, PASSWORD = "billing-bot", "pw-Zq8!never-shown"
REFUSED = "nobody@example.org"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """cert.pem and key.pem for 127.0.0.1 and localhost, valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: email.message.EmailMessage


@dataclass
class SmtpServer:
    """aiosmtpd on 127.0.0.1: what it received, and the logins it was offered."""

    port: int
    received: list[Received] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    controller: object = None

    def only_message(self) -> Received:
        assert len(self.received) == 1, [r.message["Subject"] for r in self.received]
        return self.received[0]


def start_smtp(cert: tuple[Path, Path], *, implicit_tls: bool = False, starttls: bool = True) -> SmtpServer:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    server = SmtpServer(free_port())
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*cert)

    class Handler:
        async def handle_RCPT(self, _server, _session, envelope, address, _options):
            if address == REFUSED:
                return "550 5.1.1 no such user here"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, _server, _session, envelope):
            message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
            server.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
            return "250 Message accepted"

    def authenticator(_server, _session, _envelope, mechanism, data):
        if isinstance(data, LoginPassword):
            server.logins.append((data.login.decode(), data.password.decode()))
            return AuthResult(success=data.login.decode() == USER and data.password.decode() == PASSWORD,
                              handled=False)
        return AuthResult(success=False, handled=False)

    options = dict(authenticator=authenticator, auth_require_tls=not implicit_tls)
    if implicit_tls:   # aiosmtpd does not count TLS from the start as TLS for AUTH: the whole connection is TLS
        controller = Controller(Handler(), hostname="127.0.0.1", port=server.port, ssl_context=context, **options)
    else:
        controller = Controller(Handler(), hostname="127.0.0.1", port=server.port,
                                tls_context=context if starttls else None, **options)
    controller.start()
    server.controller = controller
    return server


@dataclass
class Webhook:
    """An HTTP listener on 127.0.0.1: each request's JSON body, answered with the queued statuses, then 200."""

    url: str
    statuses: list[int] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    httpd: object = None

    def texts(self) -> list[str]:
        return [r["text"] for r in self.requests]


def start_webhook() -> Webhook:
    hook = Webhook("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):   # noqa: N802 - the name http.server calls
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.requests.append(json.loads(body))
            status = hook.statuses.pop(0) if hook.statuses else 200
            reply = b"ok" if status == 200 else b"no_service" if status == 404 else b"try later"
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "0")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):   # quiet
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    hook.httpd = httpd
    hook.url = f"http://127.0.0.1:{httpd.server_address[1]}/services/T000/B000/XyZsecretTOKEN"
    return hook
