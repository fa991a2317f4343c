"""The FOCUS export that AWS Data Exports writes to S3.

AWS Data Exports delivers (AWS documentation, "Understanding export
delivery"):

    s3://<bucket>/<prefix>/<export-name>/data/BILLING_PERIOD=YYYY-MM/...      data files
    s3://<bucket>/<prefix>/<export-name>/metadata/BILLING_PERIOD=YYYY-MM/<export-name>-Manifest.json

The manifest's `dataFiles` lists the full s3:// URIs of the current data
files (gzip CSV or Parquet); the manifest is written after the data. With
the "create new file" delivery option each refresh lands in a further
sub-folder named by its execution id, so several manifests can exist for a
month: the newest (by LastModified) wins. The configured `prefix` may be
either `<prefix>` (the export folder is then found below it; two different
exports there is an error) or `<prefix>/<export-name>`.

The export covers the whole payer organization, so the listed files are
downloaded to a temporary folder, read with DuckDB (columns mapped by name,
case-insensitively), restricted to the cluster's sub_accounts and summed
per record-schema key, with ChargePeriodStart truncated to the day. Keeping
only this cluster's share is why the snapshot holds normalized rows rather
than the raw files: two clusters under one payer export must not each
ingest the whole export. Tags may be a JSON string (CSV) or a map
(Parquet); a "user:" prefix on a key is dropped so keys match the
configured hub tag as Cost Explorer reports it. BilledCost may be a double
in AWS's files: it is read through its shortest decimal text, never as
binary float arithmetic.

IAM permissions: s3:ListBucket on the bucket (may be limited to the prefix)
and s3:GetObject on `<prefix>/*`.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

import duckdb

from billing.errors import InputError, SourceError
from billing.months import Month
from billing.sources.aws import common
from billing.sources.aws.common import PROVIDER_NAME, UTC, Explanation, call_aws, month_start
from billing.sources.base import LiveSource, service_category
from billing.sources.focus import duckdb_reader, file_format

log = logging.getLogger(__name__)

REQUIRED_EXPORT_COLUMNS = ("BilledCost", "BillingCurrency", "BillingPeriodStart", "ChargeCategory",
                           "ServiceName", "SubAccountId")
OPTIONAL_EXPORT_COLUMNS = ("ProviderName", "BillingAccountId", "ChargePeriodStart", "ChargeClass",
                           "ServiceCategory", "Tags")
_S3_URI = re.compile(r"^s3://([^/]+)/(.+)$")




@dataclass(frozen=True)
class _Manifest:
    key: str
    data_keys: tuple[str, ...]
    columns: tuple[str, ...]
    execution_id: str


class FocusExportS3(LiveSource):
    """A cluster's month from the FOCUS export AWS Data Exports writes to S3."""

    @property
    def bucket(self) -> str:
        return self.cluster.source.bucket

    @property
    def prefix(self) -> str:
        return self.cluster.source.prefix.strip("/")

    def _uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

    def _client(self):
        return common.make_client("s3", self.cluster.source.region)

    def _explain(self, what: str, missing: SourceError | None = None) -> Explanation:
        def explain(code: str, message: str) -> str | SourceError | None:
            if missing is not None and code in ("NoSuchKey", "404"):
                return missing
            if code in ("AccessDenied", "AllAccessDisabled", "403"):
                return (f"S3 denied access to {what}: the credentials need s3:ListBucket on bucket "
                        f"{self.bucket!r} and s3:GetObject on {self._uri(self.prefix + '/*' if self.prefix else '*')}")
            if code == "NoSuchBucket":
                return f"bucket {self.bucket!r} does not exist (check the source's bucket setting)"
            if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"):
                return (f"bucket {self.bucket!r} is not in region {self.cluster.source.region!r}; set the "
                        "source's region to the bucket's region")
            return None
        return explain

    def _call(self, what: str, call: Callable[[], Any], missing: SourceError | None = None) -> Any:
        return call_aws(self.label, call, explain=self._explain(what, missing), sleep=self.sleep)

    def _missing_file(self, manifest: _Manifest, key: str) -> SourceError:
        return SourceError(self.label, f"manifest {self._uri(manifest.key)} lists {self._uri(key)}, which does not "
                                       "exist; the export may be being rewritten, fetch again later", transient=True)

    # -- finding the month's manifest -------------------------------------------------

    def _list(self, client, prefix: str, delimiter: str | None = None) -> Iterator[dict]:
        """Pages of list_objects_v2 under `prefix`."""
        params = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            params["Delimiter"] = delimiter
        while True:
            page = self._call(self._uri(prefix), lambda: client.list_objects_v2(**params))
            yield page
            if not page.get("IsTruncated"):
                return
            params = dict(params, ContinuationToken=page["NextContinuationToken"])

    def _manifests_under(self, client, export_folder: str, month: Month) -> list[dict]:
        folder = f"{export_folder}/metadata/BILLING_PERIOD={month}/".lstrip("/")
        return [obj for page in self._list(client, folder) for obj in page.get("Contents", [])
                if obj["Key"].endswith("Manifest.json")]

    def _find_manifest(self, client, month: Month) -> str:
        """Key of the newest manifest for `month`, whether prefix names the export or its parent."""
        found = self._manifests_under(client, self.prefix, month)
        if not found:
            parent = f"{self.prefix}/" if self.prefix else ""
            for page in self._list(client, parent, delimiter="/"):
                for common in page.get("CommonPrefixes", []):
                    found += self._manifests_under(client, common["Prefix"].rstrip("/"), month)
        if not found:
            raise SourceError(self.label, f"no FOCUS export for {month} under {self._uri(self.prefix)} (looked for "
                                          f"<export-name>/metadata/BILLING_PERIOD={month}/<export-name>-Manifest.json)")
        exports = sorted({obj["Key"].split("/metadata/BILLING_PERIOD=")[0] for obj in found})
        if len(exports) > 1:
            raise SourceError(self.label, f"several exports under {self._uri(self.prefix)}: "
                                          f"{', '.join(self._uri(e) for e in exports)}; set the source's prefix "
                                          "to the one that holds the FOCUS export")
        return max(found, key=lambda obj: (obj["LastModified"], obj["Key"]))["Key"]

    def _read_manifest(self, client, month: Month) -> _Manifest:
        key = self._find_manifest(client, month)
        where = f"manifest {self._uri(key)}"
        body = self._call(self._uri(key), lambda: client.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        try:
            manifest = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise SourceError(self.label, f"{where} is not valid JSON") from None
        files = manifest.get("dataFiles") if isinstance(manifest, dict) else None
        if not isinstance(files, list):
            raise SourceError(self.label, f"{where} has no 'dataFiles' list")
        data_keys = []
        for uri in files:
            match = _S3_URI.match(uri) if isinstance(uri, str) else None
            if not match:
                raise SourceError(self.label, f"{where}: dataFiles entry {uri!r} is not an s3:// URI")
            if match.group(1) != self.bucket:
                raise SourceError(self.label, f"{where}: dataFiles entry {uri!r} is outside bucket {self.bucket!r}")
            data_keys.append(match.group(2))
        columns = tuple(c.get("name", "") for c in manifest.get("columns") or [] if isinstance(c, dict))
        return _Manifest(key, tuple(data_keys), columns, str(manifest.get("executionId", "")))

    # -- downloading and reading ---------------------------------------------------------

    def _download(self, client, manifest: _Manifest, key: str, folder: Path, n: int) -> Path:
        """One data file to `folder`; a listed file that is gone raises SourceError."""
        target = folder / f"{n:05d}-{Path(key).name}"

        def download() -> None:
            body = client.get_object(Bucket=self.bucket, Key=key)["Body"]
            with open(target, "wb") as fh:
                shutil.copyfileobj(body, fh, 1 << 20)

        self._call(self._uri(key), download, missing=self._missing_file(manifest, key))
        return target

    def fetch_records(self, month: Month) -> list[dict[str, Any]]:
        client = self._client()
        manifest = self._read_manifest(client, month)
        log.info("%s: reading %d file(s) of %s (execution %s)", self.label, len(manifest.data_keys),
                 self._uri(manifest.key), manifest.execution_id or "unknown")
        if not manifest.data_keys:
            return []
        with tempfile.TemporaryDirectory(prefix="billing-aws-focus-") as tmp:
            paths = [self._download(client, manifest, key, Path(tmp), n) for n, key in enumerate(manifest.data_keys)]
            return self._records_from_files(paths, month)

    def _records_from_files(self, paths: list[Path], month: Month) -> list[dict[str, Any]]:
        by_format: dict[str, list[Path]] = {}
        for path in paths:
            try:
                by_format.setdefault(file_format(path.name), []).append(path)
            except InputError:
                raise SourceError(self.label, f"export data file {path.name.split('-', 1)[1]!r} is neither "
                                              "CSV(.gz) nor Parquet") from None
        summed: dict[tuple, Decimal] = {}
        for fmt, group in sorted(by_format.items()):
            for key, cost in focus_files_summary(group, fmt, month, self.cluster, self.label):
                summed[key] = summed.get(key, Decimal(0)) + cost
        fields = ("ProviderName", "BillingAccountId", "SubAccountId", "BillingPeriodStart", "ChargePeriodStart",
                  "ChargeCategory", "ChargeClass", "ServiceName", "ServiceCategory", "BillingCurrency", "Tags")
        return [dict(zip(fields, key), BilledCost=cost, x_Estimated=False)
                for key, cost in sorted(summed.items(), key=lambda kv: repr(kv[0])) if cost != 0]

    def probe(self, month: Month) -> tuple[str, list[str]]:
        """Finds the manifest and checks each listed file is readable, without downloading it."""
        client = self._client()
        manifest = self._read_manifest(client, month)
        size = 0
        for key in manifest.data_keys:
            head = self._call(self._uri(key), lambda: client.head_object(Bucket=self.bucket, Key=key),
                              missing=self._missing_file(manifest, key))
            size += int(head.get("ContentLength", 0))
        detail = (f"FOCUS export {month}: {self._uri(manifest.key)} lists {len(manifest.data_keys)} file(s), "
                  f"{size / 2**20:.1f} MiB")
        warnings = []
        if manifest.columns:
            missing = [c for c in REQUIRED_EXPORT_COLUMNS if c.lower() not in {m.lower() for m in manifest.columns}]
            if missing:
                warnings.append(f"the export lacks FOCUS column(s) {missing}; is it a FOCUS export?")
            if "tags" not in {m.lower() for m in manifest.columns}:
                warnings.append(f"the export has no Tags column, so no cost can be matched to a hub by "
                                f"{self.cluster.hub_tag!r}")
        if not manifest.data_keys:
            warnings.append(f"the manifest lists no data files for {month}")
        return detail, warnings


def focus_files_summary(paths: list[Path], fmt: str, month: Month, cluster, label: str
                        ) -> Iterator[tuple[tuple, Decimal]]:
    """Sum FOCUS rows of `paths` for the cluster's accounts per record-schema key.

    Yields (key, BilledCost) with key = (ProviderName, BillingAccountId,
    SubAccountId, BillingPeriodStart, ChargePeriodStart (day), ChargeCategory,
    ChargeClass, ServiceName, ServiceCategory, BillingCurrency, Tags JSON).
    """
    where = f"the export's {fmt} file(s)"
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET threads = 2")
        con.execute(f"CREATE VIEW src AS SELECT * FROM {_reader(paths, fmt)}")
        rows = con.execute(_summary_sql(_columns(con, where, label)),
                           {"accounts": list(cluster.sub_accounts)}).fetchall()
    except duckdb.Error as err:
        raise SourceError(label, f"cannot read {where}: {str(err).splitlines()[0]}") from None
    finally:
        con.close()
    start = month_start(month)
    for (provider, billing_account, sub, period_start, charge_start, category, charge_class, service,
         service_cat, currency, tags_json, cost) in rows:
        if period_start != start:
            raise SourceError(label, f"{where}: account {sub} has BillingPeriodStart {period_start.isoformat()} "
                                     f"in the export for {month}; expected {start.isoformat()}")
        yield ((provider or PROVIDER_NAME, billing_account or cluster.billing_account, sub, start,
                charge_start.astimezone(UTC), category, charge_class, service,
                service_cat or service_category(service), currency, normalize_tags(tags_json, label)), cost)


def _reader(paths: list[Path], fmt: str) -> str:
    """DuckDB table function over the downloaded files (our own temporary paths)."""
    return duckdb_reader([str(p) for p in paths], fmt)


@dataclass(frozen=True)
class _Columns:
    """SQL expressions for the export's columns, found by name (case-insensitively)."""

    quoted: dict[str, str]       # FOCUS name -> quoted column name in the files
    tags_is_map: bool


def _columns(con, where: str, label: str) -> _Columns:
    types = {name.lower(): (name, str(typ).upper()) for name, typ, *_ in con.execute("DESCRIBE src").fetchall()}
    missing = [c for c in REQUIRED_EXPORT_COLUMNS if c.lower() not in types]
    if missing:
        raise SourceError(label, f"{where}: column(s) {missing} are missing; found "
                                 f"{sorted(name for name, _ in types.values())}")
    quoted = {c: '"' + types[c.lower()][0].replace('"', '""') + '"'
              for c in REQUIRED_EXPORT_COLUMNS + OPTIONAL_EXPORT_COLUMNS if c.lower() in types}
    columns = _Columns(quoted, types.get("tags", ("", ""))[1].startswith(("MAP", "STRUCT")))
    _check_values(con, columns, where, label)
    return columns


def _summary_sql(cols: _Columns) -> str:
    q = cols.quoted

    def text(name: str, default: str = "NULL") -> str:
        return f"CAST({q[name]} AS VARCHAR)" if name in q else default

    period_start = f"CAST({q['BillingPeriodStart']} AS TIMESTAMPTZ)"
    charge_start = (f"date_trunc('day', CAST({q['ChargePeriodStart']} AS TIMESTAMPTZ))"
                    if "ChargePeriodStart" in q else period_start)
    tags = "NULL" if "Tags" not in q else f"CAST(to_json({q['Tags']}) AS VARCHAR)" if cols.tags_is_map else text("Tags")
    return f"""
        SELECT {text('ProviderName')}, {text('BillingAccountId')}, {text('SubAccountId')},
               {period_start}, {charge_start}, {text('ChargeCategory')}, NULLIF({text('ChargeClass')}, ''),
               {text('ServiceName')}, NULLIF({text('ServiceCategory')}, ''), {text('BillingCurrency')}, {tags},
               SUM(CAST({text('BilledCost')} AS DECIMAL(38, 18)))
        FROM src
        WHERE list_contains($accounts, {text('SubAccountId')})
        GROUP BY ALL"""


def _check_values(con, cols: _Columns, where: str, label: str) -> None:
    """Refuse empty or non-numeric costs and unreadable dates, naming the column and value."""
    cost = cols.quoted["BilledCost"]
    bad = con.execute(f"SELECT CAST({cost} AS VARCHAR) FROM src WHERE {cost} IS NULL OR "
                      f"TRY_CAST(CAST({cost} AS VARCHAR) AS DECIMAL(38, 18)) IS NULL LIMIT 1").fetchone()
    if bad:
        shown = "an empty value" if bad[0] is None else repr(bad[0])
        raise SourceError(label, f"{where}: column BilledCost holds {shown}, which is not a number")
    for name in ("BillingPeriodStart", "ChargePeriodStart"):
        if name in cols.quoted:
            column = cols.quoted[name]
            bad = con.execute(f"SELECT CAST({column} AS VARCHAR) FROM src "
                              f"WHERE TRY_CAST({column} AS TIMESTAMPTZ) IS NULL LIMIT 1").fetchone()
            if bad:
                raise SourceError(label, f"{where}: column {name} holds {bad[0]!r}, which is not a timestamp")


def normalize_tags(raw: str | None, label: str) -> str:
    """Tags as canonical JSON (sorted keys); a "user:" key prefix is dropped."""
    if raw is None or raw.strip() == "":
        return "{}"
    try:
        tags = json.loads(raw)
    except ValueError:
        raise SourceError(label, f"column Tags holds {raw[:80]!r}, which is not a JSON object") from None
    if not isinstance(tags, dict):
        raise SourceError(label, f"column Tags holds {raw[:80]!r}, which is not a JSON object")
    plain = {k: v for k, v in tags.items() if not k.startswith("user:")}
    for key, value in tags.items():
        if key.startswith("user:"):
            plain.setdefault(key[len("user:"):], value)
    return json.dumps(plain, sort_keys=True)
