"""One run per organization and month at a time, and what each run did.

`month_lock` is held for the whole of a run that may write a month (run,
amend, void), across processes and machines that share the ledger: on
PostgreSQL a session advisory lock (released by the server if the holder
dies), on SQLite a row in `run_locks` (a holder whose process is gone is
taken over). A second run waits a bounded time, then fails saying who holds
the month. `record_run` keeps each run's outcome for `billing status`.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from sqlalchemy import delete, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing.errors import BillingError
from billing.ledger.record import default_actor
from billing.ledger.schema import MonthRunRow, RunLockRow

DEFAULT_LOCK_WAIT = 120.0   # seconds a second run waits for the month before giving up


class MonthLocked(BillingError):
    """Another run holds the month."""


def _advisory_key(org_id: str, month: str) -> int:
    """A signed 64-bit key for PostgreSQL's advisory locks, from the organization and month."""
    return int.from_bytes(hashlib.sha256(f"hub-billing:{org_id}:{month}".encode()).digest()[:8], "big", signed=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder_text(row: RunLockRow | None) -> str:
    if row is None:
        return "another run"
    return f"{row.holder}, since {row.started_at:%Y-%m-%d %H:%M} UTC"


@contextlib.contextmanager
def month_lock(engine: Engine, org_id: str, month: str, *, wait: float = DEFAULT_LOCK_WAIT,
               sleep: Callable[[float], None] = time.sleep, actor: str | None = None) -> Iterator[None]:
    """Hold the organization's month for the duration of the block."""
    host, pid = socket.gethostname()[:128], os.getpid()
    holder = f"{actor or default_actor()}@{host} pid {pid}"
    deadline = time.monotonic() + wait
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            key = _advisory_key(org_id, month)
            while not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                conn.commit()
                if time.monotonic() >= deadline:
                    raise MonthLocked(f"{month} of {org_id} is being invoiced by {_holder_text(_row(engine, org_id, month))}; "
                                      f"waited {wait:.0f} s: try again when it has finished")
                sleep(1.0)
            conn.commit()
            try:
                _write_holder(engine, org_id, month, holder, host, pid, replace=True)
                yield
            finally:
                _clear_holder(engine, org_id, month, pid)
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    while not _write_holder(engine, org_id, month, holder, host, pid, replace=False):
        row = _row(engine, org_id, month)
        if row is not None and row.host == host and row.pid != pid and not _alive(row.pid):
            _clear_holder(engine, org_id, month, row.pid)   # its process died: take the month over
            continue
        if row is not None and row.host == host and row.pid == pid:
            raise MonthLocked(f"{month} of {org_id} is already being invoiced by this process")
        if time.monotonic() >= deadline:
            raise MonthLocked(f"{month} of {org_id} is being invoiced by {_holder_text(row)}; waited {wait:.0f} s: "
                              "try again when it has finished")
        sleep(1.0)
    try:
        yield
    finally:
        _clear_holder(engine, org_id, month, pid)


def _row(engine: Engine, org_id: str, month: str) -> RunLockRow | None:
    with Session(engine) as session:
        return session.get(RunLockRow, (org_id, month))


def _write_holder(engine: Engine, org_id: str, month: str, holder: str, host: str, pid: int, *,
                  replace: bool) -> bool:
    now = dt.datetime.now(dt.timezone.utc)
    try:
        with Session(engine) as session, session.begin():
            if replace:
                session.execute(delete(RunLockRow).where(RunLockRow.org_id == org_id, RunLockRow.month == month))
            session.add(RunLockRow(org_id=org_id, month=month, holder=holder, host=host, pid=pid, started_at=now))
        return True
    except IntegrityError:
        return False


def _clear_holder(engine: Engine, org_id: str, month: str, pid: int) -> None:
    with Session(engine) as session, session.begin():
        session.execute(delete(RunLockRow).where(RunLockRow.org_id == org_id, RunLockRow.month == month,
                                                 RunLockRow.pid == pid))


# ---- what each run did ------------------------------------------------------------------


@dataclass(frozen=True)
class MonthRun:
    month: str
    command: str
    outcome: str
    started_at: dt.datetime
    finished_at: dt.datetime
    actor: str
    message: str
    details: dict


def record_run(engine: Engine, org_id: str, month: str, *, command: str, outcome: str, started_at: dt.datetime,
               actor: str | None = None, message: str = "", **details) -> None:
    with Session(engine) as session, session.begin():
        session.add(MonthRunRow(org_id=org_id, month=month, command=command, outcome=outcome, started_at=started_at,
                                finished_at=dt.datetime.now(dt.timezone.utc), actor=actor or default_actor(),
                                message=message, details=json.dumps(details, sort_keys=True, default=str)))


def latest_runs(engine: Engine, org_id: str) -> dict[str, MonthRun]:
    """The latest run of each month."""
    with Session(engine) as session:
        rows = session.scalars(select(MonthRunRow).where(MonthRunRow.org_id == org_id)
                               .order_by(MonthRunRow.finished_at, MonthRunRow.id))
        return {r.month: MonthRun(r.month, r.command, r.outcome, r.started_at, r.finished_at, r.actor, r.message,
                                  json.loads(r.details)) for r in rows}
