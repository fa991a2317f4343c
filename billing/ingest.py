"""Ingest: read a month's cost rows from every source into one aggregated table.

All sources deliver files in the normalized cost-record schema (FOCUS), so a
single DuckDB query per distinct file set does the work: it reads CSV,
CSV.gz or Parquet, keeps the rows whose BillingPeriodStart falls in the
month, extracts the hub tags and sums the cost exactly (DECIMAL(38,18)),
grouped by everything attribution needs. Files whose cost or Tags columns
have other types than the rest of their set are read by a query of their
own, and the exact sums are added. Nothing loops over rows in Python;
what comes back is a few hundred groups.

A row whose ChargeClass is "Correction" fixes an already-invoiced period:
it stays in a group of its own, which records the month it corrects (that
of its ChargePeriodStart), so the invoice can show it as a correction
instead of netting it into the month's usage. ChargeClass is optional: a
file without it has no corrections.

A cluster with cost in the month but not one row carrying its hub tag stops
the month: its hub_tag is almost surely misspelled, and all its cost would
silently become overhead.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Iterable

import duckdb

from billing.config import Cluster, Organization
from billing.errors import InputError
from billing.money import ZERO, is_iso_currency, round_money
from billing.months import Month
from billing.sources import CostFiles, SnapshotStore, make_source
from billing.sources.base import CHARGE_CATEGORIES, REQUIRED_FOCUS_COLUMNS, file_sha256
from billing.sources.focus import duckdb_reader, sql_string as _sql_string

log = logging.getLogger(__name__)

MONEY_SQL = "DECIMAL(38,18)"
PROVIDER_KEYS = (("amazon", "aws"), ("aws", "aws"), ("google", "gcp"), ("gcp", "gcp"),
                 ("microsoft", "azure"), ("azure", "azure"))


@dataclass(frozen=True)
class CostGroup:
    """Cost rows that share everything attribution looks at, summed exactly."""

    provider: str              # gcp, aws, azure (or the lower-cased ProviderName)
    billing_account: str
    sub_account: str | None
    tags: tuple[str | None, ...]  # one value per key of IngestedMonth.tag_keys
    charge_category: str
    service_name: str
    service_category: str
    currency: str
    cost: Decimal
    rows: int
    # ChargeClass "Correction": the month (YYYY-MM) of the rows' ChargePeriodStart, the period they correct.
    corrects: str | None = None


@dataclass(frozen=True)
class SourceSummary:
    source: str
    clusters: tuple[str, ...]
    paths: tuple[str, ...]
    fingerprint: str
    rows: int
    estimated: bool
    totals: tuple[tuple[str, Decimal], ...] = ()   # the month's cost per currency, exact


@dataclass(frozen=True)
class IngestedMonth:
    month: Month
    tag_keys: tuple[str, ...]
    groups: tuple[CostGroup, ...]
    sources: tuple[SourceSummary, ...]
    warnings: tuple[str, ...] = ()
    # Clusters with cost but not one row carrying their hub tag: a preview shows them, a finalization stops.
    untagged: tuple[str, ...] = ()

    def refuse_untagged(self) -> None:
        if len(self.untagged) == 1:
            raise InputError(self.untagged[0])
        if self.untagged:
            raise InputError(f"{self.month} is not finalized: {len(self.untagged)} clusters have cost but no row "
                             "carrying their hub tag", list(self.untagged))

    @property
    def estimated(self) -> bool:
        return any(s.estimated for s in self.sources)

    @property
    def fingerprint(self) -> str:
        """Content hash of every input the month was computed from."""
        digest = hashlib.sha256()
        for s in sorted(self.sources, key=lambda s: s.fingerprint):
            digest.update(s.fingerprint.encode())
        return digest.hexdigest()

    def tag(self, group: CostGroup, key: str) -> str | None:
        return group.tags[self.tag_keys.index(key)]

    @property
    def corrected_months(self) -> tuple[str, ...]:
        """The months (YYYY-MM) that this month's Correction rows correct, oldest first."""
        return tuple(sorted({g.corrects for g in self.groups if g.corrects}))


def provider_key(provider_name: str | None) -> str:
    name = (provider_name or "").lower()
    for word, key in PROVIDER_KEYS:
        if word in name:
            return key
    return name


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"threads": 2})
    con.execute("SET TimeZone = 'UTC'")
    return con


def _reader(files: CostFiles, paths: Iterable[str], filename: bool = False) -> str:
    return duckdb_reader(paths, files.format, filename=filename)


def _column_types(con, files: CostFiles, path: str) -> dict[str, str]:
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {_reader(files, [path])}").fetchall()
    except duckdb.Error as err:
        raise InputError(f"{path}: cannot read as {files.format.upper()}: {str(err).splitlines()[0]}") from None
    return {r[0]: r[1] for r in rows}


@dataclass(frozen=True)
class _Scan:
    """Files of one set whose cost and Tags columns have the same types: one DuckDB scan.

    read_parquet(union_by_name) unifies a column's type across files (DECIMAL
    with DOUBLE becomes DOUBLE, FLOAT with DOUBLE changes the float's text,
    two wide DECIMALs can become DOUBLE), so files are only scanned together
    when those columns have exactly the same type.
    """

    files: CostFiles        # `paths` holds this scan's files only
    cost_type: str
    tags_type: str
    estimated: bool         # some file of the scan has x_Estimated (union_by_name fills NULL in the others)
    charge_class: bool = False    # some file has ChargeClass (optional in the files this tool reads)
    charge_period: bool = False   # some file has ChargePeriodStart (needed by a Correction row)


def _check_columns(con, files: CostFiles) -> list[_Scan]:
    """Every file must have the FOCUS columns ingest needs; returns the files grouped by the types that matter."""
    by_types: dict[tuple[str, str], list[tuple[str, set[str]]]] = {}
    for path in files.paths:
        file_types = _column_types(con, files, path)
        missing = [c for c in (*REQUIRED_FOCUS_COLUMNS, files.cost_column) if c not in file_types]
        if missing:
            raise InputError(f"{path}: missing FOCUS column(s) {', '.join(missing)} "
                             f"(found: {', '.join(list(file_types)[:12])}{', ...' if len(file_types) > 12 else ''})")
        key = (file_types[files.cost_column], file_types["Tags"])
        by_types.setdefault(key, []).append((path, set(file_types)))
    scans = []
    for (cost_type, tags_type), found in by_types.items():
        present = set().union(*(columns for _, columns in found))
        scans.append(_Scan(dataclasses.replace(files, paths=tuple(p for p, _ in found)), cost_type, tags_type,
                           "x_Estimated" in present, "ChargeClass" in present, "ChargePeriodStart" in present))
    return scans


def _money_expr(column: str, sql_type: str) -> str:
    col = f'"{column}"'
    if sql_type.upper().startswith(("DOUBLE", "FLOAT", "REAL")):
        # A float in someone else's file: take its shortest decimal representation, never binary arithmetic.
        return f"TRY_CAST(CAST({col} AS VARCHAR) AS {MONEY_SQL})"
    if sql_type.upper().startswith("DECIMAL") or "INT" in sql_type.upper():
        return f"CAST({col} AS {MONEY_SQL})"
    return f"TRY_CAST(trim({col}) AS {MONEY_SQL})"


def _summable_as_is(sql_type: str) -> bool:
    """Whether the column can be summed in its own type and the exact sum cast once: integers, and decimals
    with at most MONEY_SQL's 18 decimals (a wider scale is rounded row by row, as `_money_expr` does)."""
    found = re.fullmatch(r"DECIMAL\((\d+),\s*(\d+)\)", sql_type.strip().upper())
    if found:
        return int(found.group(2)) <= 18
    return sql_type.strip().upper() in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
                                        "USMALLINT", "UINTEGER", "UBIGINT")


# Exports prefix user-defined tag keys (AWS FOCUS: "user:2i2c:hub-name"); the plain key is tried first.
TAG_KEY_PREFIXES = ("", "user:")


def _tags_expr(tag_keys: tuple[str, ...], tags_type: str) -> tuple[str, list[str]]:
    """(a list of every spelling's value, one expression per configured key); the JSON is parsed once."""
    spellings = [p + k for k in tag_keys for p in TAG_KEY_PREFIXES]
    if not spellings:
        return "CAST(NULL AS VARCHAR[])", []
    if tags_type.upper().startswith("MAP"):
        values = "[" + ", ".join(f"CAST(element_at(Tags, {_sql_string(s)})[1] AS VARCHAR)" for s in spellings) + "]"
    else:
        paths = "[" + ", ".join(_sql_string('$."' + s.replace('"', '\\"') + '"') for s in spellings) + "]"
        values = f"json_extract_string(CAST(Tags AS VARCHAR), {paths})"
    n = len(TAG_KEY_PREFIXES)
    per_key = [f"coalesce({', '.join(f'tag_values[{i * n + j + 1}]' for j in range(n))})" for i in range(len(tag_keys))]
    return values, per_key


def aggregate_files(files: CostFiles, month: Month, tag_keys: tuple[str, ...],
                    con: duckdb.DuckDBPyConnection | None = None) -> tuple[list[CostGroup], bool]:
    """The month's rows of a file set grouped and summed exactly, and whether any is estimated.

    One DuckDB scan when every file has the same column types (the common
    case); otherwise one scan per group of files with the same types, merged
    by adding the exact sums of identical groups.
    """
    con = con or _connect()
    scans = _check_columns(con, files)
    if len(scans) == 1:
        return _aggregate_scan(con, scans[0], month, tag_keys)
    merged: dict[CostGroup, CostGroup] = {}
    any_estimated = False
    for scan in scans:
        found, estimated = _aggregate_scan(con, scan, month, tag_keys)
        any_estimated = any_estimated or estimated
        for g in found:
            key = dataclasses.replace(g, cost=ZERO, rows=0)
            seen = merged.get(key)
            merged[key] = g if seen is None else dataclasses.replace(seen, cost=seen.cost + g.cost,
                                                                     rows=seen.rows + g.rows)
    return list(merged.values()), any_estimated


# FOCUS ChargeClass: null (empty in CSV) for a regular charge, "Correction" for a fix to an earlier period.
CORRECTION = "Correction"


def _charge_class_sql(scan: _Scan) -> str:
    return "NULLIF(trim(CAST(ChargeClass AS VARCHAR)), '')" if scan.charge_class else "CAST(NULL AS VARCHAR)"


def _charge_period_sql(scan: _Scan) -> str:
    return "TRY_CAST(ChargePeriodStart AS TIMESTAMPTZ)" if scan.charge_period else "CAST(NULL AS TIMESTAMPTZ)"


def _aggregate_scan(con, scan: _Scan, month: Month, tag_keys: tuple[str, ...]) -> tuple[list[CostGroup], bool]:
    """One DuckDB scan over files with the same column types.

    Two stages: the rows are first summed by their raw columns, Tags text
    included, so the JSON of the tags is parsed once per distinct group of
    rows instead of once per row; then the groups are summed again by the hub
    tags' values. A money column of integers or decimals is summed in its own
    type and cast once (exactly the same sum); other types are converted row
    by row (`_money_expr`).
    """
    files = scan.files
    cost = _money_expr(files.cost_column, scan.cost_type)
    as_is = _summable_as_is(scan.cost_type)
    tag_values, tags = _tags_expr(tag_keys, scan.tags_type)
    if scan.tags_type.upper().startswith("MAP"):
        tag_source, outer_values = f"{tag_values} AS tag_values", ""   # no JSON: extracted row by row
    else:
        tag_source, outer_values = "CAST(Tags AS VARCHAR) AS Tags", f", {tag_values} AS tag_values"
    estimated = "x_Estimated" if scan.estimated else "false"
    charge_class = _charge_class_sql(scan)
    correction = f"{charge_class} = '{CORRECTION}'"
    period = "TRY_CAST(BillingPeriodStart AS TIMESTAMPTZ)"
    query = f"""
        WITH raw AS (
            SELECT CAST(ProviderName AS VARCHAR) AS provider, CAST(BillingAccountId AS VARCHAR) AS account,
                   CAST(SubAccountId AS VARCHAR) AS sub_account, CAST(ChargeCategory AS VARCHAR) AS category,
                   CAST(ServiceName AS VARCHAR) AS service, CAST(ServiceCategory AS VARCHAR) AS service_category,
                   CAST(BillingCurrency AS VARCHAR) AS currency, {tag_source}, {charge_class} AS charge_class,
                   CASE WHEN {correction} THEN strftime({_charge_period_sql(scan)}, '%Y-%m') END AS corrects,
                   {f'sum("{files.cost_column}")' if as_is else f'sum({cost})'} AS cost, count(*) AS n,
                   {f'count(*) - count("{files.cost_column}")' if as_is else f'count(*) FILTER (WHERE {cost} IS NULL)'}
                       AS bad_cost,
                   count(*) FILTER (WHERE {period} IS NULL) AS bad_period,
                   count(*) FILTER (WHERE {charge_class} IS NOT NULL AND NOT {correction}) AS bad_class,
                   count(*) FILTER (WHERE {correction} AND ({_charge_period_sql(scan)} IS NULL
                                    OR {_charge_period_sql(scan)} >= TIMESTAMPTZ '{month.end} 00:00:00+00'))
                       AS bad_charge_period,
                   coalesce(bool_or(TRY_CAST({estimated} AS BOOLEAN)), false) AS estimated
            FROM {_reader(files, files.paths)}
            WHERE {period} IS NULL OR ({_in_month_sql(period, month)})
            GROUP BY ALL
        ), groups AS (
            SELECT *{outer_values} FROM raw
        )
        SELECT provider, account, sub_account, category, service, service_category, currency, corrects,
               {''.join(f'{t} AS tag_{i}, ' for i, t in enumerate(tags))}
               CAST(sum(cost) AS {MONEY_SQL}) AS cost, sum(n) AS n, sum(bad_cost), sum(bad_period), sum(bad_class),
               sum(bad_charge_period), bool_or(estimated) AS estimated
        FROM groups
        GROUP BY provider, account, sub_account, category, service, service_category, currency, corrects
                 {''.join(f', tag_{i}' for i in range(len(tags)))}
    """
    try:
        rows = con.execute(query).fetchall()
    except duckdb.Error as err:
        raise InputError(f"{files.source}: cannot read the cost files: {str(err).splitlines()[0]}") from None
    groups, any_estimated = [], False
    n_tags = len(tags)
    for r in rows:
        provider, account, sub, category, service, scat, currency, corrects = r[:8]
        tag_values = tuple(r[8:8 + n_tags])
        total, n, bad_cost, bad_period, bad_class, bad_charge_period, est = r[8 + n_tags:]
        for problem, count in (("bad_cost", bad_cost), ("bad_period", bad_period), ("bad_class", bad_class),
                               ("bad_charge_period", bad_charge_period)):
            if count:
                _raise_bad_value(con, scan, month, cost, problem)
        _check_group(con, files, category, currency, account)
        any_estimated = any_estimated or bool(est)
        # Sub-account ids compare case-insensitively (Azure subscription GUIDs come in both cases).
        groups.append(CostGroup(provider_key(provider), account, sub.lower() if sub else None, tag_values, category,
                                service or "", scat or "", currency, total, n, corrects))
    return groups, any_estimated


def _in_month_sql(column: str, month: Month) -> str:
    return (f"{column} >= TIMESTAMPTZ '{month.start} 00:00:00+00' "
            f"AND {column} < TIMESTAMPTZ '{month.end} 00:00:00+00'")


def _raise_bad_value(con, scan: _Scan, month: Month, cost_expr: str, problem: str) -> None:
    """Find the first offending row and name its file, field and value."""
    files = scan.files
    in_month = _in_month_sql("TRY_CAST(BillingPeriodStart AS TIMESTAMPTZ)", month)
    correction = f"{_charge_class_sql(scan)} = '{CORRECTION}'"
    if problem == "bad_cost":
        column, condition = files.cost_column, f"{cost_expr} IS NULL"
        expected = "a decimal number (FOCUS money columns are never empty)"
    elif problem == "bad_period":
        column, condition = "BillingPeriodStart", "TRY_CAST(BillingPeriodStart AS TIMESTAMPTZ) IS NULL"
        expected = "a UTC timestamp such as 2022-01-01T00:00:00Z"
    elif problem == "bad_class":
        column = "ChargeClass"
        condition = f"{_charge_class_sql(scan)} IS NOT NULL AND NOT {correction} AND {in_month}"
        expected = f"empty or {CORRECTION!r} (FOCUS ChargeClass: {CORRECTION} marks a fix to an earlier period)"
    else:
        column = "ChargePeriodStart"
        expected = (f"a UTC timestamp no later than {month} (a {CORRECTION} row's ChargePeriodStart names the "
                    "period it corrects)")
        if not scan.charge_period:
            row = con.execute(f"SELECT filename FROM {_reader(files, files.paths, True)} "
                              f"WHERE {correction} AND {in_month} LIMIT 1").fetchone()
            raise InputError(f"{row[0] if row else files.source}: field {column}: missing, but a row has ChargeClass "
                             f"{CORRECTION!r}; it must be {expected}")
        condition = (f"{correction} AND {in_month} AND ({_charge_period_sql(scan)} IS NULL "
                     f"OR {_charge_period_sql(scan)} >= TIMESTAMPTZ '{month.end} 00:00:00+00')")
    row = con.execute(f'SELECT filename, CAST("{column}" AS VARCHAR) FROM {_reader(files, files.paths, True)} '
                      f"WHERE {condition} LIMIT 1").fetchone()
    path, value = row if row else ("?", None)
    raise InputError(f"{path}: field {column}: {value!r} is not {expected}")


# Asked once per group (hundreds per scan) for a handful of distinct codes; babel's answer is slow to compute.
_is_iso_currency = functools.lru_cache(maxsize=256)(is_iso_currency)


def _check_group(con, files: CostFiles, category, currency, account) -> None:
    problem = None
    if category not in CHARGE_CATEGORIES:
        problem = ("ChargeCategory", category, f"one of {', '.join(CHARGE_CATEGORIES)}")
    elif not _is_iso_currency(currency):
        problem = ("BillingCurrency", currency, "an ISO 4217 currency code such as USD, EUR or JPY")
    elif not account:
        problem = ("BillingAccountId", account, "a billing account id")
    if problem is None:
        return
    column, value, expected = problem
    cond = f'"{column}" IS NULL' if value is None else f'CAST("{column}" AS VARCHAR) = {_sql_string(value)}'
    row = con.execute(f"SELECT filename FROM {_reader(files, files.paths, True)} WHERE {cond} LIMIT 1").fetchone()
    raise InputError(f"{row[0] if row else files.source}: field {column}: {value!r} is not {expected}")


# ---- a cluster whose hub tag no row carries ------------------------------------------


def needs_hub_tag(org: Organization, cluster: Cluster) -> bool:
    """Whether the cluster's cost must carry its hub tag: not if untagged_ok, nor if every hub owns a sub-account."""
    return not cluster.untagged_ok and not all(h.sub_account for h in org.hubs_of_cluster(cluster.id))


def hub_tag_problem(org: Organization, cluster: Cluster, month: Month, tag_keys: tuple[str, ...],
                    found: list[tuple[CostFiles, list[CostGroup]]], con=None) -> str | None:
    """What is wrong when the cluster has cost in the month but not one of its rows carries its hub tag.

    Any value counts, even an overhead one such as kube-system: a key that is
    never there means hub_tag names the wrong key, and all the cluster's cost
    would silently become overhead. `found` is (file set, its groups); the
    tag keys the rows do carry are read from the files only when this fails.
    """
    if not needs_hub_tag(org, cluster):
        return None
    index = tag_keys.index(cluster.hub_tag)
    mine = [(files, [g for g in groups if g.provider == cluster.provider and g.sub_account in cluster.sub_accounts])
            for files, groups in found]
    mine = [(files, groups) for files, groups in mine if groups]
    groups = [g for _, gs in mine for g in gs]
    if not any(g.cost for g in groups) or any(g.tags[index] for g in groups):
        return None
    keys: Counter[str] = Counter()
    for files, _ in mine:
        keys += tag_keys_on_rows(files, cluster, month, con)
    totals: dict[str, Decimal] = {}
    for g in groups:
        totals[g.currency] = totals.get(g.currency, ZERO) + g.cost
    money = " and ".join(f"{round_money(t, c):,} {c}" for c, t in sorted(totals.items()))
    sources = ", ".join(files.source for files, _ in mine)
    return (f"cluster {cluster.id!r} has {money} of cost in {month} ({sources}) but none of its rows carries "
            f"its hub tag {cluster.hub_tag!r}; tag keys found on its rows: {_describe_keys(cluster.hub_tag, keys)}; "
            "fix hub_tag, or set untagged_ok: true on the cluster if its cost really carries no hub tag")


def tag_keys_on_rows(files: CostFiles, cluster: Cluster, month: Month, con=None) -> Counter[str]:
    """How many of the cluster's rows in the month carry each tag key."""
    con = con or _connect()
    subs = ", ".join(_sql_string(s) for s in cluster.sub_accounts)
    counts: Counter[str] = Counter()
    for scan in _check_columns(con, files):
        keys = "map_keys(Tags)" if scan.tags_type.upper().startswith("MAP") else "json_keys(CAST(Tags AS VARCHAR))"
        query = f"""
            SELECT provider, key, count(*) FROM (
                SELECT CAST(ProviderName AS VARCHAR) AS provider, unnest({keys}) AS key
                FROM {_reader(scan.files, scan.files.paths)}
                WHERE lower(CAST(SubAccountId AS VARCHAR)) IN ({subs})
                  AND {_in_month_sql("TRY_CAST(BillingPeriodStart AS TIMESTAMPTZ)", month)}
            ) GROUP BY ALL
        """
        try:
            rows = con.execute(query).fetchall()
        except duckdb.Error as err:
            raise InputError(f"{files.source}: cannot read the Tags column: {str(err).splitlines()[0]}") from None
        for provider, key, n in rows:
            if provider_key(provider) == cluster.provider:
                counts[str(key)] += n
    return counts


def _describe_keys(hub_tag: str, counts: Counter[str], limit: int = 12) -> str:
    """The keys found, near matches of the hub tag first (same but for case, then similar), then the most used."""
    if not counts:
        return "none (its rows carry no tags at all)"
    wanted = hub_tag.lower()
    ranked = []
    for key, n in counts.items():
        bare = key.lower()
        for prefix in TAG_KEY_PREFIXES:  # "user:Owner" is a near match of "owner"
            if prefix and bare.startswith(prefix):
                bare = bare[len(prefix):]
        similarity = difflib.SequenceMatcher(None, wanted, bare).ratio()
        if bare == wanted:
            ranked.append(((0, 0, -n, key), f"{key!r} (differs only in case)"))
        elif similarity >= 0.6:
            ranked.append(((1, -similarity, -n, key), f"{key!r} (similar spelling)"))
        else:
            ranked.append(((2, 0, -n, key), repr(key)))
    shown = [text for _, text in sorted(ranked)[:limit]]
    more = len(ranked) - limit
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


@functools.lru_cache(maxsize=4096)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    """A file's hash, computed once per process while its size and mtime stay the same (backfills reuse it)."""
    return file_sha256(path)


def fingerprint_files(files: CostFiles) -> str:
    if files.fingerprint:
        return files.fingerprint
    digest = hashlib.sha256()
    for path in files.paths:
        stat = os.stat(path)
        digest.update(Path(path).name.encode())
        digest.update(_cached_sha256(path, stat.st_size, stat.st_mtime_ns).encode())
    return digest.hexdigest()


def _groups_by_account(found: list[tuple[CostFiles, list[CostGroup]]]) -> dict[tuple, dict[int, list[CostGroup]]]:
    """(provider, sub-account) -> index of the file set in `found` -> its groups: thousands of clusters look
    up their own groups without scanning everyone's."""
    index: dict[tuple, dict[int, list[CostGroup]]] = {}
    for i, (_, groups) in enumerate(found):
        for g in groups:
            index.setdefault((g.provider, g.sub_account), {}).setdefault(i, []).append(g)
    return index


def _found_of(cluster: Cluster, found: list[tuple[CostFiles, list[CostGroup]]],
              by_account: dict[tuple, dict[int, list[CostGroup]]]) -> list[tuple[CostFiles, list[CostGroup]]]:
    """The part of `found` that is the cluster's (what `hub_tag_problem` would pick out of all of it)."""
    mine: dict[int, list[CostGroup]] = {}
    for sub in cluster.sub_accounts:
        for i, groups in by_account.get((cluster.provider, sub), {}).items():
            mine.setdefault(i, []).extend(groups)
    return [(found[i][0], groups) for i, groups in sorted(mine.items())]


def ingest_month(org: Organization, month: Month, snapshots: SnapshotStore, *, refresh: bool = False,
                 fingerprint: bool = True) -> IngestedMonth:
    """Fetch every cluster's source for the month and aggregate each distinct file set once."""
    tag_keys = tuple(sorted({c.hub_tag for c in org.clusters}))
    file_sets: dict[tuple, tuple[CostFiles, list[str]]] = {}
    for cluster in org.clusters:
        files = make_source(cluster, org, snapshots).fetch(month, refresh=refresh)
        key = (files.paths, files.format, files.cost_column)
        file_sets.setdefault(key, (files, []))[1].append(cluster.id)
    con = _connect()
    groups: list[CostGroup] = []
    found_by_set: list[tuple[CostFiles, list[CostGroup]]] = []
    summaries: list[SourceSummary] = []
    warnings: list[str] = []
    for files, clusters in file_sets.values():
        found, estimated = aggregate_files(files, month, tag_keys, con)
        rows = sum(g.rows for g in found)
        if rows == 0 and not files.fingerprint:
            # FOCUS files cover many months; none for this one means its export is missing.
            raise InputError(f"{files.source}: no cost rows for {month} in {len(files.paths)} file(s) "
                             f"(clusters {', '.join(clusters)}); is the month's export missing?")
        if rows == 0:
            warnings.append(f"{files.source}: the source reports no cost for {month}")
        groups.extend(found)
        found_by_set.append((files, found))
        totals: dict[str, Decimal] = {}
        for g in found:
            totals[g.currency] = totals.get(g.currency, Decimal(0)) + g.cost
        summaries.append(SourceSummary(files.source, tuple(clusters), files.paths,
                                       fingerprint_files(files) if fingerprint else "", rows,
                                       files.estimated or estimated, tuple(sorted(totals.items()))))
    by_account = _groups_by_account(found_by_set)
    problems = [p for c in org.clusters
                if (p := hub_tag_problem(org, c, month, tag_keys, _found_of(c, found_by_set, by_account), con))]
    return IngestedMonth(month, tag_keys, tuple(groups), tuple(summaries), tuple(warnings), tuple(problems))
