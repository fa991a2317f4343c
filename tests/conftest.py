"""Shared fixtures: PostgreSQL when reachable (required under CI), one Prefect harness per session."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

PG_URL = os.environ.get("BILLING_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_reachable(url: str) -> str | None:
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as err:  # noqa: BLE001
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


@pytest.fixture(scope="session")
def pg_server_url(worker_id) -> str:
    """The PostgreSQL database of this test process: BILLING_TEST_PG_URL's, or, when pytest-xdist runs the tests
    in several processes, one database per process beside it (created on first use)."""
    problem = _pg_reachable(PG_URL)
    if problem:
        message = f"PostgreSQL not reachable at {PG_URL} ({problem}); set BILLING_TEST_PG_URL to test the ledger on it"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " — under CI the server is required")
        pytest.skip(message)
    if worker_id == "master":
        return PG_URL
    return _database_for_worker(PG_URL, worker_id)


def _database_for_worker(url: str, worker_id: str) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(url)
    name = f"{base.database}_{worker_id}"
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar():
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def drop_everything(url: str) -> None:
    """Drop every table of the database (the ledger's and Alembic's own), whatever version made them."""
    from sqlalchemy import MetaData, create_engine

    engine = create_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    meta.drop_all(engine)
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger_url(request, tmp_path):
    """A fresh, empty ledger database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    url = request.getfixturevalue("pg_server_url")
    drop_everything(url)
    yield url
    drop_everything(url)


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One temporary Prefect server for the whole session (it takes 15-25 s to start here)."""
    os.environ.setdefault("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-home")))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


# ---- notifications: a real SMTP server and a webhook listener on loopback (see notify_servers.py) ----------


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory):
    from notify_servers import self_signed_certificate

    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture()
def smtp_server(tls_certificate, monkeypatch):
    """aiosmtpd with STARTTLS and a login on 127.0.0.1; the client trusts its certificate through SSL_CERT_FILE,
    and finds the login in $TEST_SMTP_USER / $TEST_SMTP_PASSWORD."""
    from notify_servers import PASSWORD, USER, start_smtp

    monkeypatch.setenv("SSL_CERT_FILE", str(tls_certificate[0]))
    monkeypatch.setenv("TEST_SMTP_USER", USER)
    monkeypatch.setenv("TEST_SMTP_PASSWORD", PASSWORD)
    server = start_smtp(tls_certificate)
    yield server
    server.controller.stop()


@pytest.fixture()
def webhook(monkeypatch):
    """A webhook listener on 127.0.0.1 whose URL is in $TEST_WEBHOOK_URL; retries do not wait."""
    from notify_servers import start_webhook

    hook = start_webhook()
    monkeypatch.setenv("TEST_WEBHOOK_URL", hook.url)
    monkeypatch.setattr("billing.notify.WEBHOOK_RETRY_DELAYS", (0.0, 0.0))
    yield hook
    hook.httpd.shutdown()
    hook.httpd.server_close()
