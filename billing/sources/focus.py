"""FOCUS files as the clouds export them: CSV, gzipped CSV or Parquet."""
from __future__ import annotations

import glob
from dataclasses import dataclass
from typing import Any, Iterable

from billing.errors import InputError
from billing.months import Month
from billing.sources.base import CheckResult, CostFiles, SnapshotStore

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.gzip")
PARQUET_SUFFIXES = (".parquet", ".snappy.parquet", ".gz.parquet")


def sql_string(text: str) -> str:
    """A SQL string literal (paths and values we put in DuckDB queries)."""
    return "'" + str(text).replace("'", "''") + "'"


def duckdb_reader(paths: Iterable[str], fmt: str, *, filename: bool = False) -> str:
    """The DuckDB table function reading FOCUS (or other) CSV / CSV.gz / Parquet files by column name."""
    plist = "[" + ", ".join(sql_string(p) for p in paths) + "]"
    extra = ", filename = true" if filename else ""
    if fmt == "csv":
        # all_varchar: ids like AWS account 012345678901 stay strings; amounts are cast exactly by the reader's user.
        return f"read_csv({plist}, all_varchar = true, header = true, union_by_name = true{extra})"
    return f"read_parquet({plist}, union_by_name = true{extra})"


def file_format(path: str) -> str:
    lower = path.lower()
    if lower.endswith(CSV_SUFFIXES):
        return "csv"
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    raise InputError(f"{path}: not a FOCUS file this tool reads (expected {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)})")


@dataclass
class FocusFiles:
    """A glob of FOCUS files; each file may hold several months and clusters."""

    cluster: Any
    org: Any
    snapshots: SnapshotStore

    @property
    def pattern(self) -> str:
        return self.org.resolve(self.cluster.source.path)

    def fetch(self, month: Month, *, refresh: bool = False) -> CostFiles:
        paths = sorted(glob.glob(self.pattern, recursive=True))
        where = f"clusters ({self.cluster.id}).source.path"
        if not paths:
            raise InputError(f"{where}: no file matches {self.cluster.source.path!r} (looked for {self.pattern})")
        formats = {file_format(p) for p in paths}
        if len(formats) > 1:
            raise InputError(f"{where}: {self.cluster.source.path!r} mixes CSV and Parquet files; "
                             "give each format its own glob")
        return CostFiles(tuple(paths), formats.pop(), f"FOCUS files {self.cluster.source.path!r}",
                         cost_column=self.cluster.source.cost_column)

    def check(self, month: Month) -> CheckResult:
        """Read the month's rows of this cluster's sub-accounts: how many, how much, how many carry the hub tag."""
        from billing.ingest import aggregate_files, hub_tag_problem  # late: ingest imports this package

        tag_keys = (self.cluster.hub_tag,)
        try:
            files = self.fetch(month)
            groups, _ = aggregate_files(files, month, tag_keys)
            problem = hub_tag_problem(self.org, self.cluster, month, tag_keys, [(files, groups)])
        except InputError as err:
            return CheckResult(self.cluster.id, "focus", False, str(err))
        mine = [g for g in groups if g.provider == self.cluster.provider and g.sub_account in self.cluster.sub_accounts]
        if not mine:
            return CheckResult(self.cluster.id, "focus", False,
                               f"{len(files.paths)} {files.format} file(s) but no {month} row for sub-account(s) "
                               f"{', '.join(self.cluster.sub_accounts)} of provider {self.cluster.provider}")
        if problem:  # `billing run` refuses the month for the same reason
            return CheckResult(self.cluster.id, "focus", False, problem)
        rows = sum(g.rows for g in mine)
        tagged = sum(g.rows for g in mine if g.tags[0])
        totals = {}
        for g in mine:
            totals[g.currency] = totals.get(g.currency, 0) + g.cost
        money = ", ".join(f"{t:,.2f} {c}" for c, t in sorted(totals.items()))  # display only
        return CheckResult(self.cluster.id, "focus", True,
                           f"{rows} row(s) for {month}, {money}; {tagged} tagged with {self.cluster.hub_tag}")
