"""Per-hub usage: the daily measure that splits shared clusters, and monthly active users."""
from __future__ import annotations

import glob
from dataclasses import dataclass, field
from decimal import Decimal

import duckdb

from billing.config import Organization
from billing.errors import InputError
from billing.months import Month
from billing.sources.focus import duckdb_reader


@dataclass(frozen=True)
class MonthUsage:
    measure: str
    by_hub: dict[str, Decimal] = field(default_factory=dict)   # hub id -> usage measure summed over the month
    mau: dict[str, int] = field(default_factory=dict)          # hub id -> monthly active users
    staff: dict[str, int] = field(default_factory=dict)        # hub id -> how many of them are staff

    def billable_mau(self, hub) -> int:
        """A hub's users that are billed: none on a hub that is not billable (staging), and never its staff."""
        if not getattr(hub, "billable_users", True):
            return 0
        return max(self.mau.get(hub.id, 0) - self.staff.get(hub.id, 0), 0)


def _files(org: Organization, pattern: str, what: str) -> list[str]:
    paths = sorted(glob.glob(org.resolve(pattern)))
    if not paths:
        raise InputError(f"usage.{what}: no file matches {pattern!r} (looked for {org.resolve(pattern)})")
    return paths


def _query(paths: list[str], sql: str, what: str, required: tuple[str, ...], optional: tuple[str, ...] = ()):
    con = duckdb.connect()
    source = duckdb_reader(paths, "csv", filename=True)
    try:
        columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
    except duckdb.Error as err:
        raise InputError(f"usage.{what}: cannot read {', '.join(paths)}: {str(err).splitlines()[0]}") from None
    missing = [c for c in required if c not in columns]
    if missing:
        raise InputError(f"{paths[0]}: missing column(s) {', '.join(missing)}; expected {', '.join(required)}")
    absent = {name: "NULL" if name not in columns else name for name in optional}
    return con.execute(sql.format(source=source, **absent)).fetchall()


def load_usage(org: Organization, month: Month) -> MonthUsage:
    """The month's usage per hub; values that are not numbers are errors naming file and value."""
    by_hub: dict[str, Decimal] = {}
    mau: dict[str, int] = {}
    known = {h.id for h in org.hubs}
    if org.usage.daily:
        rows = _query(_files(org, org.usage.daily, "daily"), f"""
            SELECT filename, hub, value, TRY_CAST(value AS DECIMAL(38,18)) AS v, TRY_CAST(date AS DATE) AS d
            FROM {{source}} WHERE TRY_CAST(date AS DATE) IS NULL OR TRY_CAST(value AS DECIMAL(38,18)) IS NULL
               OR v < 0 OR (d >= DATE '{month.start}' AND d < DATE '{month.end}')""",
            "daily", ("date", "cluster", "hub", "value"))
        for filename, hub, raw, value, day in rows:
            if day is None:
                raise InputError(f"{filename}: field date: not a date YYYY-MM-DD (hub {hub!r}, value {raw!r})")
            if value is None or value < 0:
                raise InputError(f"{filename}: field value: {raw!r} is not a non-negative number (hub {hub!r}, {day})")
            if hub not in known:
                raise InputError(f"{filename}: field hub: {hub!r} is not a hub in the configuration")
            by_hub[hub] = by_hub.get(hub, Decimal(0)) + value
    staff: dict[str, int] = {}
    if org.usage.mau:
        rows = _query(_files(org, org.usage.mau, "mau"),
                      "SELECT filename, hub, mau, TRY_CAST(mau AS BIGINT), {staff}, TRY_CAST({staff} AS BIGINT) "
                      f"FROM {{source}} WHERE month = '{month}'", "mau", ("month", "hub", "mau"), ("staff",))
        for filename, hub, raw, value, raw_staff, value_staff in rows:
            if value is None or value < 0:
                raise InputError(f"{filename}: field mau: {raw!r} is not a whole number of users (hub {hub!r}, {month})")
            if raw_staff not in (None, "") and (value_staff is None or not 0 <= value_staff <= value):
                raise InputError(f"{filename}: field staff: {raw_staff!r} is not a whole number of users between 0 "
                                 f"and the hub's mau {value} (hub {hub!r}, {month})")
            if hub not in known:
                raise InputError(f"{filename}: field hub: {hub!r} is not a hub in the configuration")
            mau[hub] = mau.get(hub, 0) + value
            staff[hub] = staff.get(hub, 0) + (value_staff or 0)
    return MonthUsage(org.usage.measure, by_hub, mau, staff)
