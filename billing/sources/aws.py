"""AWS cost sources: the Cost Explorer API and the FOCUS export in S3.

Both read one cluster's month and hand back rows in the normalized record
schema; `LiveSource` snapshots them with a content hash, so a rerun does not
call AWS again unless asked (`refresh=True`).

Credentials come only from boto3's default chain (environment, AWS_PROFILE,
SSO, instance or task role); the configuration never holds keys. Every
client is made by `make_client`, which the tests replace; boto3 itself
honours AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL_COST_EXPLORER
for local emulators such as moto's server mode.

Cost Explorer (`CostExplorer`)
------------------------------
`get_cost_and_usage` accepts at most two GroupBy keys, but a correct record
needs four: the hub tag, the service, the linked account (SubAccountId) and
the record type (credits, refunds and tax must stay visible as such). So the
month is read in two steps:

1. One discovery query grouped by LINKED_ACCOUNT and RECORD_TYPE, filtered to
   the cluster's accounts. It lists which (account, record type) pairs have
   cost and their totals.
2. For each pair, one query grouped by the hub tag and SERVICE, filtered to
   exactly that account and record type.

Every cost line has exactly one account and one record type, so the filters
of step 2 partition the month: each dollar appears exactly once. The sum of
each step-2 query is checked against its step-1 total. Cost: 1 + (accounts x
record types) paid calls (plus extra pages); typically 3-5 per cluster and
month. Pairs whose discovery total is zero are still read, since their
groups may offset each other across hubs.

RECORD_TYPE -> FOCUS ChargeCategory (`charge_category`):

    Usage, DiscountedUsage, SavingsPlanCoveredUsage,
    SavingsPlanNegation (and spaced spellings)          -> Usage
    Credit, Refund, and any "... Discount"               -> Credit
    Tax                                                  -> Tax
    any "... fee" (Support fee, Recurring/Upfront reservation fee,
    Savings Plan Recurring/Upfront Fee, RIFee, Fee)      -> Purchase
    anything else (e.g. "Other out-of-cycle charges")    -> Adjustment (logged)

A group key "2i2c:hub-name$staging" gives Tags {"2i2c:hub-name": "staging"};
"2i2c:hub-name$" (nothing after "$") is untagged cost and gives Tags {}.
`Estimated: true` marks the rows x_Estimated. The connector does not refuse
such a month: the pipeline does, when finalizing (unless --draft or
--allow-estimated), so previews of the running month still work.

FOCUS export in S3 (`FocusExportS3`)
------------------------------------
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

IAM permissions
---------------
CostExplorer: ce:GetCostAndUsage (in the payer/management account, or a
member account for its own cost). FocusExportS3: s3:ListBucket on the bucket
(may be limited to the prefix) and s3:GetObject on `<prefix>/*`.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import boto3
import duckdb
from botocore.config import Config
from botocore.exceptions import (BotoCoreError, ClientError, ConnectionClosedError, ConnectTimeoutError,
                                 EndpointConnectionError, ReadTimeoutError, ResponseStreamingError)

from billing.errors import InputError, SourceError
from billing.money import to_decimal
from billing.months import Month
from billing.sources.base import LiveSource, service_category, with_retries
from billing.sources.focus import duckdb_reader, file_format

log = logging.getLogger(__name__)

PROVIDER_NAME = "AWS"
UTC = dt.timezone.utc

# ---- clients --------------------------------------------------------------------------

# One retry policy, ours (`with_retries`, logged and bounded); botocore's own is off.
CLIENT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 1},
                       connect_timeout=10, read_timeout=120, user_agent_extra="hub-billing")


def make_client(service: str, region: str):
    """A boto3 client from the default credential chain; never takes keys."""
    return boto3.session.Session().client(service, region_name=region, config=CLIENT_CONFIG)


# ---- errors ---------------------------------------------------------------------------

TRANSIENT_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "TooManyRequestsException",
    "RequestLimitExceeded", "LimitExceededException", "RequestThrottled", "RequestThrottledException",
    "SlowDown", "RequestTimeout", "RequestTimeoutException", "ServiceUnavailable",
    "ServiceUnavailableException", "InternalError", "InternalFailure", "InternalServerError",
    "InternalServiceError",
})
CREDENTIAL_CODES = frozenset({
    "UnrecognizedClientException", "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException",
    "InvalidSignatureException", "SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken",
})
TRANSIENT_NETWORK_ERRORS = (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError,
                            ConnectTimeoutError, ResponseStreamingError)
CREDENTIALS_HELP = ("configure them through the default chain (AWS_PROFILE, environment variables, "
                    "SSO login or an instance/task role)")

_SECRET_PATTERNS = (
    (re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA)[A-Z0-9]{12,}\b"), "<access-key>"),
    (re.compile(r"(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s\"']+", re.I), r"\1<redacted>"),
    (re.compile(r"(?<!\d)\d{12}(?!\d)"), "<account>"),
)


def scrub(text: str) -> str:
    """Text from AWS with access keys, signatures and account numbers masked."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _error_message(exc: ClientError) -> str:
    return scrub(str(exc.response.get("Error", {}).get("Message", "")))


def is_transient(exc: BaseException) -> float | None:
    """Seconds to wait before retrying `exc` (0 = no hint), or None if retrying cannot help."""
    if isinstance(exc, TRANSIENT_NETWORK_ERRORS):
        return 0.0
    if not isinstance(exc, ClientError):
        return None
    meta = exc.response.get("ResponseMetadata", {})
    status = int(meta.get("HTTPStatusCode") or 0)
    if _error_code(exc) not in TRANSIENT_CODES and status < 500 and status != 429:
        return None
    retry_after = (meta.get("HTTPHeaders") or {}).get("retry-after", "")
    return float(retry_after) if str(retry_after).isdigit() else 0.0


Explanation = Callable[[str, str], "str | SourceError | None"]


def call_aws(label: str, call: Callable[[], Any], *, explain: Explanation,
             sleep: Callable[[float], None] = time.sleep) -> Any:
    """Run one AWS call with retries; turn permanent failures into actionable SourceErrors.

    `explain(code, message)` returns the message (or the whole SourceError)
    for an error code this call understands, or None for the generic one.
    """
    try:
        return with_retries(call, source=label, is_transient=is_transient, sleep=sleep,
                            describe=lambda exc: scrub(str(exc)))
    except ClientError as exc:
        code, message = _error_code(exc), _error_message(exc)
        if code in CREDENTIAL_CODES:
            raise SourceError(label, f"AWS rejected the credentials ({code}); {CREDENTIALS_HELP}") from None
        explained = explain(code, message)
        if isinstance(explained, SourceError):
            raise explained from None
        raise SourceError(label, explained or f"AWS error {code}: {message}") from None
    except BotoCoreError as exc:  # no credentials, bad profile, unreachable endpoint ...
        raise SourceError(label, f"cannot call AWS ({type(exc).__name__}): {scrub(str(exc))}; "
                                 f"if this is about credentials, {CREDENTIALS_HELP}") from None


def _month_start(month: Month) -> dt.datetime:
    return dt.datetime(month.year, month.month, 1, tzinfo=UTC)


# ---- Cost Explorer ----------------------------------------------------------------------

_USAGE_RECORD_TYPES = {"usage", "discountedusage", "discounted usage", "savingsplancoveredusage",
                       "savings plan covered usage", "savingsplannegation", "savings plan negation"}


def charge_category(record_type: str) -> str:
    """The FOCUS ChargeCategory of a Cost Explorer RECORD_TYPE value (see the module doc)."""
    name = record_type.strip().lower()
    if name in _USAGE_RECORD_TYPES:
        return "Usage"
    if name in ("credit", "refund") or "discount" in name:
        return "Credit"
    if name == "tax":
        return "Tax"
    if name.endswith("fee"):
        return "Purchase"
    log.warning("Cost Explorer record type %r has no known FOCUS category; reporting it as Adjustment",
                record_type)
    return "Adjustment"


@dataclass(frozen=True)
class _Group:
    """One group of a get_cost_and_usage answer, validated."""

    period_start: dt.datetime
    estimated: bool
    keys: tuple[str, ...]
    amount: Decimal
    unit: str


def _dimension(key: str, values: Iterable[str]) -> dict:
    return {"Dimensions": {"Key": key, "Values": list(values)}}


class CostExplorer(LiveSource):
    """A cluster's month from Cost Explorer, by account, record type, hub tag and service."""

    def _client(self):
        return make_client("ce", self.cluster.source.region)

    # -- calls ------------------------------------------------------------------------

    def _explain(self, month: Month) -> Explanation:
        tag = self.cluster.hub_tag

        def explain(code: str, message: str) -> str | SourceError | None:
            if code == "AccessDeniedException":
                return ("Cost Explorer denied access: the credentials need ce:GetCostAndUsage, and Cost "
                        "Explorer must be enabled; query from the payer (management) account to see member "
                        f"accounts {list(self.cluster.sub_accounts)}")
            if code == "DataUnavailableException":
                return (f"Cost Explorer has no data for {month}: it is not enabled yet for this account (data "
                        "appears about a day after enabling) or the month is older than its retained history")
            if code == "ValidationException":
                hint = (f"; check that {tag!r} is an activated cost allocation tag in the payer account"
                        if "tag" in message.lower() else "")
                return f"Cost Explorer rejected the query: {message}{hint}"
            if code in ("RequestChangedException", "InvalidNextTokenException"):
                return SourceError(self.label, f"Cost Explorer data changed while paging ({code}); fetch again",
                                   transient=True)
            if code == "BillExpirationException":
                return f"Cost Explorer cannot return {month}: {message}"
            return None
        return explain

    def _pages(self, client, month: Month, group_by: list[dict], filter_: dict) -> Iterator[dict]:
        """Every page of one get_cost_and_usage query."""
        params = {
            "TimePeriod": {"Start": month.start.isoformat(), "End": month.end.isoformat()},
            "Granularity": "MONTHLY",
            "Metrics": [self.cluster.source.metric],
            "GroupBy": group_by,
            "Filter": filter_,
        }
        explain, seen = self._explain(month), set()
        token = None
        while True:
            page_params = dict(params, NextPageToken=token) if token else params
            page = call_aws(self.label, lambda: client.get_cost_and_usage(**page_params),
                            explain=explain, sleep=self.sleep)
            yield page
            token = page.get("NextPageToken")
            if not token:
                return
            if token in seen:
                raise SourceError(self.label, "Cost Explorer returned the same NextPageToken twice; stopping")
            seen.add(token)

    def _groups(self, page: dict, n_keys: int) -> Iterator[_Group]:
        """The page's groups, validated; a malformed field raises SourceError naming it."""
        results = page.get("ResultsByTime")
        if not isinstance(results, list):
            raise self._malformed("ResultsByTime", "is missing")
        metric = self.cluster.source.metric
        for i, result in enumerate(results):
            path = f"ResultsByTime[{i}]"
            try:
                start = dt.datetime.combine(dt.date.fromisoformat(result["TimePeriod"]["Start"]), dt.time(), UTC)
            except (KeyError, TypeError, ValueError):
                raise self._malformed(f"{path}.TimePeriod.Start", "is missing or not a date") from None
            for j, group in enumerate(result.get("Groups") or []):
                gpath = f"{path}.Groups[{j}]"
                keys = group.get("Keys")
                if not isinstance(keys, list) or len(keys) != n_keys:
                    raise self._malformed(f"{gpath}.Keys", f"should hold {n_keys} keys, got {keys!r}")
                value = (group.get("Metrics") or {}).get(metric)
                if not isinstance(value, dict):
                    raise self._malformed(f"{gpath}.Metrics.{metric}", "is missing")
                for name in ("Amount", "Unit"):
                    if not value.get(name):
                        raise self._malformed(f"{gpath}.Metrics.{metric}.{name}", "is missing")
                try:
                    amount = to_decimal(value["Amount"])
                except ValueError:
                    raise self._malformed(f"{gpath}.Metrics.{metric}.Amount",
                                          f"is not a number: {value['Amount']!r}") from None
                yield _Group(start, bool(result.get("Estimated", False)), tuple(keys), amount, value["Unit"])

    def _malformed(self, field: str, problem: str) -> SourceError:
        return SourceError(self.label, f"malformed Cost Explorer response: field {field} {problem}")

    def _tags(self, key: str) -> dict[str, str]:
        prefix = f"{self.cluster.hub_tag}$"
        if not key.startswith(prefix):
            raise self._malformed("Keys[0]", f"should start with {prefix!r}, got {key!r}")
        value = key[len(prefix):]
        return {self.cluster.hub_tag: value} if value else {}

    # -- the month ---------------------------------------------------------------------

    def _discover(self, client, month: Month) -> dict[tuple[str, str], dict[str, Decimal]]:
        """Totals per (account, record type) and currency, in the order Cost Explorer gives them."""
        accounts = self.cluster.sub_accounts
        totals: dict[tuple[str, str], dict[str, Decimal]] = {}
        group_by = [{"Type": "DIMENSION", "Key": "LINKED_ACCOUNT"}, {"Type": "DIMENSION", "Key": "RECORD_TYPE"}]
        for page in self._pages(client, month, group_by, _dimension("LINKED_ACCOUNT", accounts)):
            for g in self._groups(page, 2):
                account, record_type = g.keys
                if account not in accounts:
                    raise self._malformed("Keys[0]", f"names account {account!r}, which the filter excluded")
                by_unit = totals.setdefault((account, record_type), {})
                by_unit[g.unit] = by_unit.get(g.unit, Decimal(0)) + g.amount
        return totals

    def fetch_records(self, month: Month) -> list[dict[str, Any]]:
        client = self._client()
        rows: list[dict[str, Any]] = []
        group_by = [{"Type": "TAG", "Key": self.cluster.hub_tag}, {"Type": "DIMENSION", "Key": "SERVICE"}]
        for (account, record_type), expected in self._discover(client, month).items():
            category = charge_category(record_type)
            filter_ = {"And": [_dimension("LINKED_ACCOUNT", [account]), _dimension("RECORD_TYPE", [record_type])]}
            found: dict[str, Decimal] = {}
            for page in self._pages(client, month, group_by, filter_):
                for g in self._groups(page, 2):
                    found[g.unit] = found.get(g.unit, Decimal(0)) + g.amount
                    if g.amount != 0:
                        rows.append(self._row(month, account, category, g))
            self.check_parts_add_up(f"account {account} record type {record_type!r}", expected, found)
        return rows

    def _row(self, month: Month, account: str, category: str, g: _Group) -> dict[str, Any]:
        return self.record(month, provider=PROVIDER_NAME, sub_account=account, category=category, service=g.keys[1],
                           cost=g.amount, currency=g.unit, hub=self._tags(g.keys[0]).get(self.cluster.hub_tag),
                           day=g.period_start, estimated=g.estimated)

    def probe(self, month: Month) -> tuple[str, list[str]]:
        """One query grouped by the hub tag: proves access, shows what is there."""
        tag = self.cluster.hub_tag
        sums: dict[str, Decimal] = {}
        values: set[str] = set()
        groups = 0
        estimated = False
        for page in self._pages(self._client(), month, [{"Type": "TAG", "Key": tag}],
                                _dimension("LINKED_ACCOUNT", self.cluster.sub_accounts)):
            for g in self._groups(page, 1):
                groups += 1
                sums[g.unit] = sums.get(g.unit, Decimal(0)) + g.amount
                values.update(self._tags(g.keys[0]).values())
                estimated = estimated or g.estimated
        amount = ", ".join(f"{v} {u}" for u, v in sorted(sums.items())) or "no cost"
        detail = (f"Cost Explorer {month}: {groups} group(s), {amount} in account(s) "
                  f"{', '.join(self.cluster.sub_accounts)}; {len(values)} value(s) of tag {tag!r}")
        warnings = []
        if not groups:
            warnings.append(f"no cost found in {month} for these accounts")
        elif not values:
            warnings.append(f"no cost in {month} carries the tag {tag!r}: it is probably not activated as a cost "
                            "allocation tag in the payer account (Billing console, Cost allocation tags), or the "
                            "hubs' resources are not tagged; all cost would be reported as support")
        if estimated:
            warnings.append(f"Cost Explorer marks {month} as estimated (not final)")
        return detail, warnings


# ---- FOCUS export in S3 ---------------------------------------------------------------

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
        return make_client("s3", self.cluster.source.region)

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
    start = _month_start(month)
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
