"""What every cost source shares: the record schema, snapshots, retries.

A live connector (GCP, AWS, Azure) implements `fetch_records(month)` returning
normalized rows, and inherits the rest from `LiveSource`: snapshots with a
content hash (so reruns do not re-query paid APIs unless asked), bounded
retries for transient faults, and validation of what it returns.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Protocol, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from billing.errors import SourceError
from billing.fileio import atomic_write_bytes, output_exists  # noqa: F401  (re-exported for connectors)
from billing.money import is_iso_currency, to_decimal
from billing.months import Month

log = logging.getLogger(__name__)

CHARGE_CATEGORIES = ("Usage", "Purchase", "Tax", "Credit", "Adjustment")
MONEY_TYPE = pa.decimal128(38, 18)

# The normalized cost-record schema: a FOCUS 1.2 subset plus the project's x_ fields.
RECORD_SCHEMA = pa.schema([
    ("ProviderName", pa.string()),        # "AWS", "Google Cloud", "Microsoft"
    ("BillingAccountId", pa.string()),
    ("SubAccountId", pa.string()),        # AWS account / GCP project / Azure subscription
    ("BillingPeriodStart", pa.timestamp("us", tz="UTC")),
    ("ChargePeriodStart", pa.timestamp("us", tz="UTC")),
    ("ChargeCategory", pa.string()),      # Usage, Purchase, Tax, Credit, Adjustment
    ("ChargeClass", pa.string()),         # null or "Correction"
    ("ServiceName", pa.string()),
    ("ServiceCategory", pa.string()),
    ("BilledCost", MONEY_TYPE),
    ("BillingCurrency", pa.string()),
    ("Tags", pa.string()),                # JSON object of flat key -> value
    ("x_Estimated", pa.bool_()),          # true when the provider says the figure is not final
    ("x_Source", pa.string()),            # which connector produced the row
])
REQUIRED_FOCUS_COLUMNS = ("ProviderName", "BillingAccountId", "SubAccountId", "BillingPeriodStart",
                          "ChargeCategory", "ServiceName", "ServiceCategory", "BillingCurrency", "Tags")


@dataclass(frozen=True)
class CostFiles:
    """A month's spend from one source, as files in a shape ingest can read."""

    paths: tuple[str, ...]
    format: Literal["csv", "parquet"]
    source: str                       # human-readable, for messages ("cluster 'x': FOCUS files 'glob'")
    cost_column: str = "BilledCost"
    estimated: bool = False           # some rows are not final (AWS Cost Explorer "Estimated")
    fingerprint: str = ""             # content hash of the data, for traceability


@dataclass(frozen=True)
class CheckResult:
    """Answer of `billing sources check` for one cluster."""

    cluster: str
    source: str
    ok: bool
    detail: str
    warnings: tuple[str, ...] = ()


class CostSource(Protocol):
    """What ingest needs from a source."""

    def fetch(self, month: Month, *, refresh: bool = False) -> CostFiles: ...

    def check(self, month: Month) -> CheckResult: ...


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# ---- normalizing what a connector returns -------------------------------------------


def records_to_table(rows: Iterable[dict[str, Any]], source: str) -> pa.Table:
    """Validate connector rows and build a table in RECORD_SCHEMA.

    Each row is a dict with the schema's column names. Amounts must be
    Decimal or numeric strings; a missing column, a non-numeric amount, an
    unknown charge category or a malformed currency raises SourceError naming
    the source, the field and the value.
    """
    columns: dict[str, list[Any]] = {f.name: [] for f in RECORD_SCHEMA}
    optional = {"ChargePeriodStart", "ChargeClass", "Tags", "x_Estimated", "x_Source", "SubAccountId"}
    for n, row in enumerate(rows):
        for name in columns:
            if name not in row and name not in optional:
                raise SourceError(source, f"row {n}: field {name!r} is missing")
        try:
            cost = to_decimal(row["BilledCost"])
        except ValueError:
            raise SourceError(source, f"row {n}: field 'BilledCost' is not a number: {row['BilledCost']!r}") from None
        currency = row["BillingCurrency"]
        if not is_iso_currency(currency):
            raise SourceError(source, f"row {n}: field 'BillingCurrency' is not an ISO 4217 currency code: "
                                      f"{currency!r}")
        if row["ChargeCategory"] not in CHARGE_CATEGORIES:
            raise SourceError(source, f"row {n}: field 'ChargeCategory' is {row['ChargeCategory']!r}; "
                                      f"expected one of {list(CHARGE_CATEGORIES)}")
        tags = row.get("Tags")
        for name in columns:
            columns[name].append(row.get(name))
        columns["BilledCost"][-1] = cost.quantize(Decimal(1).scaleb(-18))
        columns["Tags"][-1] = tags if tags is None or isinstance(tags, str) else json.dumps(tags, sort_keys=True)
        columns["x_Estimated"][-1] = bool(row.get("x_Estimated", False))
        columns["x_Source"][-1] = row.get("x_Source") or source
        columns["ChargePeriodStart"][-1] = row.get("ChargePeriodStart") or row["BillingPeriodStart"]
    return pa.table(columns, schema=RECORD_SCHEMA)


def table_fingerprint(table: pa.Table) -> str:
    """Content hash of a normalized table, independent of row order."""
    rows = sorted(json.dumps([str(v) for v in r.values()]) for r in table.to_pylist())
    digest = hashlib.sha256()
    for r in rows:
        digest.update(r.encode())
        digest.update(b"\n")
    return digest.hexdigest()


# ---- snapshots ----------------------------------------------------------------------


@dataclass
class SnapshotStore:
    """Fetched months kept as Parquet files named by their content hash.

    Layout: <root>/<key>/<YYYY-MM>/<sha256>.parquet plus latest.json naming
    the newest. Old snapshots are kept, so every invoice can be traced to the
    exact data it was computed from.
    """

    root: Path

    def _dir(self, key: str, month: Month) -> Path:
        return self.root / key / str(month)

    def latest(self, key: str, month: Month) -> CostFiles | None:
        pointer = self._dir(key, month) / "latest.json"
        if not output_exists(pointer):      # (fetched from the object store when outputs live there)
            return None
        meta = json.loads(pointer.read_text())
        path = self._dir(key, month) / meta["file"]
        if not output_exists(path):
            return None
        return CostFiles((str(path),), "parquet", meta["source"], estimated=meta.get("estimated", False),
                         fingerprint=meta["sha256"])

    def save(self, key: str, month: Month, table: pa.Table, source: str) -> CostFiles:
        fingerprint = table_fingerprint(table)
        folder = self._dir(key, month)
        path = folder / f"{fingerprint}.parquet"
        if not path.exists():
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink)
            atomic_write_bytes(path, sink.getvalue().to_pybytes())
        estimated = bool(table.num_rows and any(table.column("x_Estimated").to_pylist()))
        meta = {"file": path.name, "sha256": fingerprint, "source": source, "rows": table.num_rows,
                "estimated": estimated, "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        atomic_write_bytes(folder / "latest.json", json.dumps(meta, indent=2).encode())
        return CostFiles((str(path),), "parquet", source, estimated=estimated, fingerprint=fingerprint)


# ---- retries ------------------------------------------------------------------------

T = TypeVar("T")
MAX_SERVICE_WAIT = 900.0  # seconds: the longest Retry-After we honour before giving up waiting


def with_retries(call: Callable[[], T], *, source: str, is_transient: Callable[[BaseException], float | None],
                 attempts: int = 5, base_delay: float = 1.0, max_delay: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep,
                 describe: Callable[[BaseException], str] = str) -> T:
    """Run `call`, retrying transient faults with bounded exponential backoff.

    `is_transient(exc)` returns None for a permanent error (re-raised at
    once), or the number of seconds the service asked us to wait (0 when it
    did not say). After `attempts` tries the last error is raised as a
    transient SourceError; `describe` turns an error into text fit for messages
    (connectors pass one that scrubs ids and signatures).
    """
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except SourceError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified right below
            wait_hint = is_transient(exc)
            if wait_hint is None:
                raise
            if attempt == attempts:
                raise SourceError(source, f"gave up after {attempts} attempts: {type(exc).__name__}: {describe(exc)}",
                                  transient=True) from None
            backoff = min(max_delay, base_delay * 2 ** (attempt - 1) * (1 + random.random() / 4))
            # What the service asked for wins over our backoff, up to a hard ceiling.
            delay = min(MAX_SERVICE_WAIT, max(wait_hint, backoff))
            log.warning("%s: transient error (%s), retrying in %.1fs (attempt %d of %d)",
                        source, type(exc).__name__, delay, attempt, attempts)
            sleep(delay)
    raise AssertionError("unreachable")


# ---- the base of live connectors ----------------------------------------------------


def month_is_open(month: Month, today: dt.date | None = None) -> bool:
    """A month that has not ended yet (UTC): a cloud's figures for it are estimates."""
    return (today or dt.datetime.now(dt.timezone.utc).date()) < month.end



@dataclass
class LiveSource:
    """Base for API connectors: subclasses implement fetch_records and probe."""

    cluster: Any
    org: Any
    snapshots: SnapshotStore
    label: str = field(default="", init=False)

    # How retries wait; tests pass a recorder so they are instant.
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, kw_only=True)

    def __post_init__(self) -> None:
        self.label = f"cluster {self.cluster.id!r} ({self.cluster.source.type})"

    @property
    def snapshot_key(self) -> str:
        return f"{self.cluster.source.type}-{self.cluster.id}"

    def fetch(self, month: Month, *, refresh: bool = False) -> CostFiles:
        if not refresh:
            cached = self.snapshots.latest(self.snapshot_key, month)
            if cached is not None:
                return cached
        table = records_to_table(self.fetch_records(month), self.label)
        return self.snapshots.save(self.snapshot_key, month, table, self.label)

    def check(self, month: Month) -> CheckResult:
        try:
            detail, warnings = self.probe(month)
        except SourceError as err:
            return CheckResult(self.cluster.id, self.cluster.source.type, False, str(err))
        return CheckResult(self.cluster.id, self.cluster.source.type, True, detail, tuple(warnings))

    def record(self, month: Month, *, provider: str, sub_account: str, category: str, service: str, cost: Decimal,
               currency: str, hub: str | None, day: dt.datetime | None = None, estimated: bool = False) -> dict:
        """One normalized cost record of this cluster (Tags carry the hub tag when the cloud gave one)."""
        start = dt.datetime.combine(month.start, dt.time(), tzinfo=dt.timezone.utc)
        return {"ProviderName": provider, "BillingAccountId": self.cluster.billing_account,
                "SubAccountId": sub_account, "BillingPeriodStart": start, "ChargePeriodStart": day or start,
                "ChargeCategory": category, "ChargeClass": None, "ServiceName": service,
                "ServiceCategory": service_category(service), "BilledCost": cost, "BillingCurrency": currency,
                "Tags": {self.cluster.hub_tag: hub} if hub else {}, "x_Estimated": estimated}

    def check_parts_add_up(self, what: str, expected: dict[str, Decimal], found: dict[str, Decimal]) -> None:
        """Detail queries must add up to their discovery total per currency (to the cent), or fetch again."""
        for currency in sorted(set(expected) | set(found)):
            want, got = expected.get(currency, Decimal(0)), found.get(currency, Decimal(0))
            if abs(want - got) >= Decimal("0.01"):
                raise SourceError(self.label, f"{what}: the groups add up to {got} {currency} but the total is "
                                              f"{want} {currency}; the data probably changed while reading, "
                                              "fetch again", transient=True)

    def retry(self, call: Callable[[], T], is_transient: Callable[[BaseException], float | None], **kwargs) -> T:
        """`with_retries` with this source's label and sleep."""
        return with_retries(call, source=self.label, is_transient=is_transient, sleep=self.sleep, **kwargs)

    # subclasses --------------------------------------------------------------------
    def fetch_records(self, month: Month) -> Iterable[dict[str, Any]]:
        raise NotImplementedError

    def probe(self, month: Month) -> tuple[str, list[str]]:
        """Try to read the month; return (what was found, warnings) or raise SourceError."""
        raise NotImplementedError


# ---- mapping native service names to FOCUS ServiceCategory ------------------------

_SERVICE_CATEGORY_WORDS = (
    # (word in the lower-cased service name, FOCUS ServiceCategory); first match wins
    ("azure files", "Storage"), ("netapp", "Storage"), ("reserved vm", "Compute"),
    ("azure monitor", "Management and Governance"), ("ip addresses", "Networking"), ("azure dns", "Networking"),
    ("front door", "Networking"), ("key vault", "Security"),
    ("kubernetes", "Compute"), ("compute", "Compute"), ("ec2", "Compute"), ("virtual machines", "Compute"),
    ("container", "Compute"), ("lambda", "Compute"), ("functions", "Compute"),
    ("storage", "Storage"), ("s3", "Storage"), ("filestore", "Storage"), ("elastic file system", "Storage"),
    ("efs", "Storage"), ("disk", "Storage"), ("backup", "Storage"),
    ("network", "Networking"), ("virtual private cloud", "Networking"), ("nat", "Networking"), ("vpc", "Networking"), ("load balanc", "Networking"),
    ("bandwidth", "Networking"), ("data transfer", "Networking"), ("cloud dns", "Networking"), ("route 53", "Networking"),
    ("bigquery", "Analytics"), ("sql", "Databases"), ("database", "Databases"),
    ("monitoring", "Management and Governance"), ("logging", "Management and Governance"),
    ("cloudwatch", "Management and Governance"), ("log analytics", "Management and Governance"),
    ("support", "Other"), ("tax", "Other"),
)


def service_category(service_name: str | None) -> str:
    """A FOCUS ServiceCategory for a provider's native service name ("Other" if unknown)."""
    name = (service_name or "").lower()
    for word, category in _SERVICE_CATEGORY_WORDS:
        if word in name:
            return category
    return "Other"
