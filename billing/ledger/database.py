"""Where the ledger lives, connecting to it, and bringing its schema up to date with Alembic.

A SQLite file by default (`OUT/ledger.db`), PostgreSQL when `--ledger`,
BILLING_LEDGER_URL or the configuration's `ledger_url` says so. Opening a
ledger upgrades its schema in place to this version's (`alembic upgrade
head`), under a lock, so two runs that start at once on an empty database
do not both try to create the tables. A ledger written before migrations
existed is recognized and stamped as the first revision, then upgraded.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine, make_url

from billing.errors import InputError

LEDGER_ENV = "BILLING_LEDGER_URL"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
FIRST_REVISION = "0001"
# Any constant: the PostgreSQL advisory lock that serializes schema upgrades.
_MIGRATION_LOCK_KEY = 0x6875625F62696C6C  # "hub_bill"


def ledger_url(org, out_dir: str, override: str | None = None) -> str:
    return override or os.environ.get(LEDGER_ENV) or org.ledger_url or f"sqlite:///{os.path.join(out_dir, 'ledger.db')}"


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - never echo an unparseable URL, it may hold a secret
        return "<unparseable database URL>"


def _alembic_config(connection: Connection):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    config = _alembic_config(None)  # type: ignore[arg-type]
    return ScriptDirectory.from_config(config).get_current_head()


def current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


@contextlib.contextmanager
def _migration_lock(engine: Engine, connection: Connection):
    """One schema upgrade at a time: an advisory lock on PostgreSQL, a lock file beside a SQLite file."""
    if engine.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
        yield
        return
    folder, name = os.path.split(os.path.abspath(database))
    with open(os.path.join(folder, f".{name}.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def migrate(engine: Engine) -> str:
    """Upgrade the ledger's schema to this version's head revision; returns the revision it was at."""
    from alembic import command

    head = head_revision()
    with engine.connect() as connection:
        before = current_revision(connection)
        if before == head:
            return before
        connection.commit()
        with _migration_lock(engine, connection):
            before = current_revision(connection)      # another process may have upgraded meanwhile
            if before != head:
                config = _alembic_config(connection)
                tables = set(inspect(connection).get_table_names())
                if before is None and "invoices" in tables:
                    command.stamp(config, FIRST_REVISION)   # a ledger from before migrations existed
                command.upgrade(config, "head")
                connection.commit()
    return before or ""


def open_ledger(url: str) -> Engine:
    """Connect and bring the schema up to date.

    Every way the URL can be wrong (not a URL, an unknown database type, a
    driver that is not installed, a file or server that cannot be opened)
    is an `InputError` naming the URL, its password hidden.
    """
    from sqlalchemy.exc import NoSuchModuleError

    where = safe_url(url)

    def first_line(err: BaseException) -> str:
        text = str(err).strip()
        return text.splitlines()[0] if text else type(err).__name__

    def refuse(problem: str, advice: str) -> InputError:
        try:
            password = make_url(url).password
        except Exception:  # noqa: BLE001
            password = None
        if password:
            problem = problem.replace(str(password), "***")
        return InputError(f"ledger {where}: {problem}; {advice}")

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001
        raise refuse("not a database URL", "use e.g. sqlite:///PATH/ledger.db or "
                                           "postgresql+psycopg://USER@HOST/DATABASE") from None
    sqlite_file = parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
    if sqlite_file:
        folder = os.path.dirname(os.path.abspath(parsed.database))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as err:
            raise refuse(f"cannot create its folder {folder} ({err.strerror})",
                         "choose a place you can write to") from None
    try:
        engine = create_engine(url, future=True)
    except NoSuchModuleError:
        raise refuse(f"unknown database type {parsed.drivername!r}",
                     "use sqlite:///PATH/ledger.db or postgresql+psycopg://USER@HOST/DATABASE") from None
    except ImportError as err:   # the dialect is known, its DBAPI module is not installed
        raise refuse(f"its database driver (Python module {err.name or '?'!r}) is not installed",
                     "install it, or name an installed driver in the URL (e.g. postgresql+psycopg://)") from None
    except Exception as err:  # noqa: BLE001 - ArgumentError, TypeError...: bad options in the URL
        raise refuse(f"invalid database URL ({first_line(err)})", "check the URL and its ?options") from None
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn, _record):  # pragma: no cover - trivial
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA busy_timeout = 30000")
    try:
        migrate(engine)
    except Exception as err:  # noqa: BLE001
        engine.dispose()
        reason = first_line(getattr(err, "orig", None) or err)
        if sqlite_file:
            raise refuse(f"cannot open the SQLite file {parsed.database} ({reason})",
                         "the ledger must be a SQLite database file in a folder you can write to") from None
        raise refuse(f"cannot open the database ({type(err).__name__}: {reason})",
                     "check the URL, that the server is reachable and that the user may create tables") from None
    return engine
