"""AWS connectors, offline, through the real boto3 SDK.

Cost Explorer answers are replayed with botocore's Stubber from recorded
responses: tests/data/aws/<test name>/NN-<operation>.json, one file per call,
in call order, each {"operation", "params", "response"} or {"operation",
"params", "error": {"code", "message", "http_status"}}. "params" is what the
connector must send; the Stubber checks it. The S3 FOCUS export runs against
moto's in-memory S3.

Re-recording (never in CI): with real credentials in the default chain,

    BILLING_RECORD=1 BILLING_RECORD_ACCOUNTS=111111111111=<real id>,222222222222=<real id> \\
        python -m pytest tests/sources/test_aws.py -k "month or probe_tagged"

runs the scenarios marked recordable against the real API and rewrites their
folders: the real account ids are written back as the fake ones, any other
12-digit number becomes 999999999999, page tokens become page-token-N, the
random ClientRequestToken becomes "<any>". BILLING_RECORD_NAMES=fake=real,...
maps other names the same way (an Athena database, table or result
location), and BILLING_RECORD_REGION sets the region (default us-east-1).
The other scenarios (errors, malformed answers) are hand-written and skipped
in that mode. The amounts asserted below then need updating to the new data.

In "params", the string "<any>" matches whatever the connector sends there.
"""
from __future__ import annotations

import copy
import datetime as dt
import gzip
import itertools
import json
import os
import re
import sys
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore import xform_name
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError
from botocore.stub import ANY, Stubber

from billing.config import Cluster
from billing.errors import SourceError
from billing.months import Month
from billing.sources import SnapshotStore, make_source
from billing.sources.aws import common as aws_common
from billing.sources.aws.cost_explorer import CostExplorer
from billing.sources.aws.focus_s3 import FocusExportS3, normalize_tags

DATA = Path(__file__).resolve().parent.parent / "data" / "aws"
MONTH = Month(2022, 3)
TAG = "2i2c:hub-name"
EC2 = "Amazon Elastic Compute Cloud - Compute"
RECORDING = os.environ.get("BILLING_RECORD") == "1"
# fake id -> real id, only while recording
FAKE_TO_REAL = dict(pair.split("=", 1) for pair in os.environ.get("BILLING_RECORD_ACCOUNTS", "").split(",")
                    if "=" in pair) if RECORDING else {}
FAKE_TO_REAL_NAMES = dict(pair.split("=", 1) for pair in os.environ.get("BILLING_RECORD_NAMES", "").split(",")
                          if "=" in pair) if RECORDING else {}
RECORD_REGION = os.environ.get("BILLING_RECORD_REGION", "us-east-1")


# ---- replaying and recording API calls ----------------------------------------------------


def account(fake: str) -> str:
    return FAKE_TO_REAL.get(fake, fake)


def real_name(fake: str) -> str:
    """A name the tests use (database, table, result location), or the real one while recording."""
    return FAKE_TO_REAL_NAMES.get(fake, fake)


class Scrubber:
    """Makes a recorded call safe to commit: fake account ids and names, renamed page tokens."""

    def __init__(self):
        self.accounts = {real: fake for fake, real in FAKE_TO_REAL.items()}
        self.names = sorted(((real, fake) for fake, real in FAKE_TO_REAL_NAMES.items()), key=lambda p: -len(p[0]))
        self.tokens: dict[str, str] = {}

    def __call__(self, value, key: str = ""):
        if isinstance(value, dict):
            return {k: self(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v, key) for v in value]
        if isinstance(value, str) and key in ("NextPageToken", "NextToken"):
            return self.tokens.setdefault(value, f"page-token-{len(self.tokens) + 1}")
        if isinstance(value, str) and key == "ClientRequestToken":
            return "<any>"
        if isinstance(value, str):
            for real, fake in self.names:
                value = value.replace(real, fake)
            return re.sub(r"(?<!\d)\d{12}(?!\d)", lambda m: self.accounts.get(m.group(0), "999999999999"), value)
        return value


def recording_client(service: str, name: str):
    """A real client (default credential chain) that writes each call to tests/data/aws/<name>/."""
    folder = DATA / name
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.json"):
        old.unlink()
    client = aws_common.make_client(service, RECORD_REGION)
    scrub, counter, pending = Scrubber(), itertools.count(1), {}
    service_id = client.meta.service_model.service_id.hyphenize()

    def before(params, **_):
        pending["params"] = copy.deepcopy(params)

    def after(http_response, parsed, model, **_):
        entry = {"operation": model.name, "params": pending.pop("params", None)}
        parsed = {k: v for k, v in parsed.items() if k != "ResponseMetadata"}
        if http_response.status_code >= 300:
            entry["error"] = {"code": parsed.get("Error", {}).get("Code"), "http_status": http_response.status_code,
                              "message": parsed.get("Error", {}).get("Message")}
        else:
            entry["response"] = parsed
        path = folder / f"{next(counter):02d}-{xform_name(model.name)}.json"
        path.write_text(json.dumps(scrub(entry), indent=2, default=str) + "\n")

    client.meta.events.register(f"before-parameter-build.{service_id}.*", before)
    client.meta.events.register(f"after-call.{service_id}.*", after)
    return client


def expected(params):
    """Recorded params as the Stubber's expectation: "<any>" matches anything."""
    if isinstance(params, dict):
        return {k: expected(v) for k, v in params.items()}
    if isinstance(params, list):
        return [expected(v) for v in params]
    return ANY if params == "<any>" else params


def replay_client(service: str, name: str, repeat: int = 1):
    """A real boto3 client whose calls are answered, in order, from tests/data/aws/<name>/."""
    files = sorted((DATA / name).glob("*.json"))
    assert files, f"no recorded calls in {DATA / name}"
    client = boto3.session.Session().client(service, region_name="us-east-1")
    stubber = Stubber(client)
    for _ in range(repeat):
        for path in files:
            call = json.loads(path.read_text())
            method = xform_name(call["operation"])
            if "error" in call:
                e = call["error"]
                stubber.add_client_error(method, service_error_code=e["code"], service_message=e["message"],
                                         http_status_code=e["http_status"],
                                         expected_params=expected(call.get("params")))
            else:
                stubber.add_response(method, call["response"], expected(call.get("params")))
    stubber.activate()
    return client, stubber


class Replay:
    def __init__(self, stubber: Stubber | None):
        self.stubber = stubber

    def done(self) -> None:
        """Every recorded call was made."""
        if self.stubber is not None:
            self.stubber.assert_no_pending_responses()


@pytest.fixture
def aws_replay(monkeypatch):
    """aws_replay(name) makes the connectors' clients answer from tests/data/aws/<name>/."""

    def use(name: str, *, service: str = "ce", recordable: bool = False, repeat: int = 1) -> Replay:
        if RECORDING:
            if not recordable:
                pytest.skip("hand-written scenario; nothing to record")
            client, stubber = recording_client(service, name), None
        else:
            client, stubber = replay_client(service, name, repeat)
        monkeypatch.setattr(aws_common, "make_client", lambda svc, region: client)
        return Replay(stubber)

    return use


@pytest.fixture(autouse=True)
def aws_env(monkeypatch, tmp_path):
    """Fake credentials; never the real ~/.aws, never a metadata service."""
    if RECORDING:
        return
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


# ---- building sources ------------------------------------------------------------------------


def make_cluster(source: dict, sub_accounts=("111111111111",)) -> Cluster:
    return Cluster(id="aws-shared", provider="aws", billing_account="999999999999",
                   sub_accounts=tuple(account(a) for a in sub_accounts), tenancy="shared",
                   split={"rule": "usage"}, hub_tag=TAG, source=source)


def cost_explorer(tmp_path, sub_accounts=("111111111111",), **options) -> CostExplorer:
    cluster = make_cluster({"type": "aws_cost_explorer", **options}, sub_accounts)
    source = make_source(cluster, SimpleNamespace(name="test org"), SnapshotStore(tmp_path / "snapshots"))
    assert isinstance(source, CostExplorer)
    source.sleep = lambda seconds: pytest.fail("unexpected retry")
    return source


def read_rows(files) -> list[dict]:
    return [row for path in files.paths for row in pq.read_table(path).to_pylist()]


def summary(rows) -> list[tuple]:
    """(account, category, service, tags, amount) sorted, amounts normalized."""
    return sorted((r["SubAccountId"], r["ChargeCategory"], r["ServiceName"], r["Tags"], r["BilledCost"].normalize())
                  for r in rows)


# ---- Cost Explorer ------------------------------------------------------------------------------


def test_month_by_account_record_type_tag_and_service(tmp_path, aws_replay):
    """Two accounts, pages on both queries, credits, refunds, tax, untagged and zero groups."""
    replay = aws_replay("cost_explorer_month", recordable=True)
    source = cost_explorer(tmp_path, sub_accounts=("111111111111", "222222222222"))

    files = source.fetch(MONTH)

    replay.done()
    rows = read_rows(files)
    assert summary(rows) == [
        ("111111111111", "Credit", EC2, "{}", Decimal("-20")),
        ("111111111111", "Tax", EC2, json.dumps({TAG: "staging"}), Decimal("6.05")),
        ("111111111111", "Tax", "Amazon Elastic File System", "{}", Decimal("5.03")),
        ("111111111111", "Usage", EC2, json.dumps({TAG: "prod"}), Decimal("40.0000000001")),
        ("111111111111", "Usage", EC2, json.dumps({TAG: "staging"}), Decimal("60.5")),
        ("111111111111", "Usage", "Amazon Elastic File System", "{}", Decimal("10.2499999999")),
        ("222222222222", "Credit", "Amazon Simple Storage Service", json.dumps({TAG: "prod"}), Decimal("-1.25")),
        ("222222222222", "Usage", "Amazon Simple Storage Service", json.dumps({TAG: "prod"}), Decimal("5.25")),
    ]
    assert sum(r["BilledCost"] for r in rows) == Decimal("105.83")
    first = rows[0]
    assert first["ProviderName"] == "AWS" and first["BillingAccountId"] == "999999999999"
    assert first["BillingPeriodStart"] == dt.datetime(2022, 3, 1, tzinfo=dt.timezone.utc)
    assert first["ChargePeriodStart"] == dt.datetime(2022, 3, 1, tzinfo=dt.timezone.utc)
    assert {r["BillingCurrency"] for r in rows} == {"USD"}
    assert {r["ServiceCategory"] for r in rows if r["ServiceName"] == EC2} == {"Compute"}
    assert not any(r["x_Estimated"] for r in rows) and not files.estimated
    assert files.fingerprint and files.format == "parquet"


def test_second_fetch_reuses_the_snapshot_and_refresh_calls_again(tmp_path, aws_replay):
    replay = aws_replay("estimated_month", repeat=2)
    source = cost_explorer(tmp_path)

    first = source.fetch(MONTH)
    again = source.fetch(MONTH)            # the Stubber would fail on an extra call
    assert again == first
    with pytest.raises(AssertionError):
        replay.done()                       # the second copy of the calls is still queued

    refreshed = source.fetch(MONTH, refresh=True)
    replay.done()
    assert refreshed.fingerprint == first.fingerprint and refreshed.paths == first.paths


def test_estimated_rows_are_flagged_not_refused(tmp_path, aws_replay):
    """Whether an estimated month may be finalized is the pipeline's decision, not the connector's."""
    replay = aws_replay("estimated_month")
    files = cost_explorer(tmp_path).fetch(MONTH)
    replay.done()
    rows = read_rows(files)
    assert [r["x_Estimated"] for r in rows] == [True]
    assert files.estimated


def test_throttling_and_server_errors_are_retried(tmp_path, aws_replay):
    replay = aws_replay("throttled_then_ok")
    source = cost_explorer(tmp_path)
    waits = []
    source.sleep = waits.append

    rows = read_rows(source.fetch(MONTH))

    replay.done()
    assert len(waits) == 3 and all(w > 0 for w in waits)
    assert summary(rows) == [("111111111111", "Usage", EC2, json.dumps({TAG: "prod"}), Decimal("12.5"))]


def test_retries_are_bounded(tmp_path, aws_replay):
    replay = aws_replay("throttled_forever")
    source = cost_explorer(tmp_path)
    waits = []
    source.sleep = waits.append
    with pytest.raises(SourceError, match="gave up after 5 attempts") as err:
        source.fetch(MONTH)
    replay.done()
    assert err.value.transient and len(waits) == 4


def test_empty_month_gives_no_rows(tmp_path, aws_replay):
    replay = aws_replay("empty_month")
    files = cost_explorer(tmp_path).fetch(MONTH)
    replay.done()
    assert read_rows(files) == []


@pytest.mark.parametrize("name, field", [
    ("malformed_amount", r"ResultsByTime\[0\]\.Groups\[0\]\.Metrics\.UnblendedCost\.Amount is not a number: 'abc'"),
    ("missing_metrics", r"ResultsByTime\[0\]\.Groups\[0\]\.Metrics\.UnblendedCost is missing"),
    ("missing_unit", r"ResultsByTime\[0\]\.Groups\[0\]\.Metrics\.UnblendedCost\.Unit is missing"),
])
def test_malformed_response_names_the_field(tmp_path, aws_replay, name, field):
    replay = aws_replay(name)
    with pytest.raises(SourceError, match="malformed Cost Explorer response: field " + field):
        cost_explorer(tmp_path).fetch(MONTH)
    replay.done()


@pytest.mark.parametrize("name, message", [
    ("access_denied", "Cost Explorer denied access: the credentials need ce:GetCostAndUsage"),
    ("invalid_credentials", r"AWS rejected the credentials \(UnrecognizedClientException\)"),
    ("tag_not_valid", "check that '2i2c:hub-name' is an activated cost allocation tag in the payer account"),
])
def test_permanent_errors_fail_at_once(tmp_path, aws_replay, name, message):
    replay = aws_replay(name)
    with pytest.raises(SourceError, match=message) as err:
        cost_explorer(tmp_path).fetch(MONTH)   # its sleep fails the test on any retry
    replay.done()
    assert not err.value.transient
    assert "123456789012" not in str(err.value)


def test_detail_that_does_not_add_up_is_refused(tmp_path, aws_replay):
    aws_replay("changed_while_reading")
    with pytest.raises(SourceError, match=r"add up to 9\.00 USD but the total is 10\.00 USD") as err:
        cost_explorer(tmp_path).fetch(MONTH)
    assert err.value.transient


def test_probe_reports_what_it_found(tmp_path, aws_replay):
    replay = aws_replay("probe_tagged", recordable=True)
    result = cost_explorer(tmp_path).check(MONTH)
    replay.done()
    assert result.ok and result.warnings == ()
    assert "2 group(s), 12.5 USD" in result.detail and "1 value(s) of tag '2i2c:hub-name'" in result.detail


def test_probe_warns_when_nothing_carries_the_hub_tag(tmp_path, aws_replay):
    replay = aws_replay("probe_untagged")
    result = cost_explorer(tmp_path).check(MONTH)
    replay.done()
    assert result.ok
    assert any("not activated as a cost allocation tag" in w for w in result.warnings)
    assert any("estimated" in w for w in result.warnings)


def test_probe_reports_access_denied(tmp_path, aws_replay):
    replay = aws_replay("probe_access_denied")
    result = cost_explorer(tmp_path).check(MONTH)
    replay.done()
    assert not result.ok and "the credentials need ce:GetCostAndUsage" in result.detail


@pytest.mark.parametrize("record_type, category", [
    ("Usage", "Usage"), ("DiscountedUsage", "Usage"), ("SavingsPlanCoveredUsage", "Usage"),
    ("SavingsPlanNegation", "Usage"), ("Credit", "Credit"), ("Refund", "Credit"),
    ("Enterprise Discount Program Discount", "Credit"), ("Tax", "Tax"), ("Support fee", "Purchase"),
    ("Recurring reservation fee", "Purchase"), ("Upfront reservation fee", "Purchase"),
    ("SavingsPlanRecurringFee", "Purchase"), ("Other out-of-cycle charges", "Adjustment"),
])
def test_record_types_map_to_focus_charge_categories(record_type, category):
    assert aws_common.charge_category(record_type) == category


def _client_error(code: str, status: int, headers: dict | None = None) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "x"},
                        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}}}, "Op")


@pytest.mark.parametrize("exc, expected", [
    (_client_error("ThrottlingException", 400), 0.0),
    (_client_error("LimitExceededException", 400), 0.0),
    (_client_error("RequestLimitExceeded", 400), 0.0),
    (_client_error("SlowDown", 503, {"retry-after": "7"}), 7.0),
    (_client_error("SomethingNew", 500), 0.0),
    (EndpointConnectionError(endpoint_url="https://ce.us-east-1.amazonaws.com"), 0.0),
    (ReadTimeoutError(endpoint_url="https://ce.us-east-1.amazonaws.com"), 0.0),
    (_client_error("AccessDeniedException", 400), None),
    (_client_error("ValidationException", 400), None),
    (_client_error("DataUnavailableException", 400), None),
    (NoCredentialsError(), None),
])
def test_transient_errors(exc, expected):
    assert aws_common.is_transient(exc) == expected


def test_missing_credentials_are_explained():
    def call():
        raise NoCredentialsError()
    with pytest.raises(SourceError, match="default chain"):
        aws_common.call_aws("cluster 'x'", call, explain=lambda code, message: None, sleep=lambda s: None)


def test_messages_are_scrubbed():
    text = ("User arn:aws:iam::123456789012:user/ci key AKIAABCDEFGHIJKLMNOP "
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA%2F&X-Amz-Signature=abc123")
    cleaned = aws_common.scrub(text)
    assert "123456789012" not in cleaned and "AKIAABCDEFGHIJKLMNOP" not in cleaned
    assert "abc123" not in cleaned and "X-Amz-Signature=<redacted>" in cleaned


def test_recorder_writes_calls_that_replay(tmp_path, monkeypatch):
    """The re-record helper, run against moto instead of AWS: one file per call, scrubbed, replayable."""
    from moto import mock_aws

    monkeypatch.setattr(sys.modules[__name__], "DATA", tmp_path)
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        boto3.client("s3", region_name="us-east-1").put_object(Bucket=BUCKET, Key="acct-123456789012/a", Body=b"x")
        client = recording_client("s3", "recorded")
        client.list_objects_v2(Bucket=BUCKET, Prefix="acct-")
        with pytest.raises(ClientError):
            client.head_object(Bucket=BUCKET, Key="missing")

    files = sorted((tmp_path / "recorded").glob("*.json"))
    assert [f.name for f in files] == ["01-list_objects_v2.json", "02-head_object.json"]
    assert "123456789012" not in "".join(f.read_text() for f in files)
    client, stubber = replay_client("s3", "recorded")
    assert client.list_objects_v2(Bucket=BUCKET, Prefix="acct-")["Contents"][0]["Key"] == "acct-999999999999/a"
    with pytest.raises(ClientError, match="404"):
        client.head_object(Bucket=BUCKET, Key="missing")
    stubber.assert_no_pending_responses()


def test_recorder_scrubs_account_ids_and_tokens():
    scrub = Scrubber()
    entry = {"params": {"Filter": {"Values": ["123456789012"]}, "NextPageToken": "opaque-1"},
             "response": {"NextPageToken": "opaque-2", "Keys": ["123456789012", "Usage"]}}
    assert scrub(entry) == {"params": {"Filter": {"Values": ["999999999999"]}, "NextPageToken": "page-token-1"},
                            "response": {"NextPageToken": "page-token-2", "Keys": ["999999999999", "Usage"]}}
    athena = {"params": {"ClientRequestToken": "5b0c2f0e-8d1e-4f8e-9a57-0d4c7c5f1a11", "NextToken": "opaque-3"}}
    assert scrub(athena) == {"params": {"ClientRequestToken": "<any>", "NextToken": "page-token-3"}}


# ---- FOCUS export in S3 ------------------------------------------------------------------------

BUCKET = "billing-exports"
EXPORT = "exports/focus-2i2c"
FOCUS_DATA = DATA / "focus_export"


def focus_source(tmp_path, prefix="exports") -> FocusExportS3:
    cluster = make_cluster({"type": "aws_focus_s3", "bucket": BUCKET, "prefix": prefix},
                           sub_accounts=("111111111111", "222222222222"))
    source = make_source(cluster, SimpleNamespace(name="test org"), SnapshotStore(tmp_path / "snapshots"))
    assert isinstance(source, FocusExportS3)
    source.sleep = lambda seconds: pytest.fail("unexpected retry")
    return source


def parquet_part() -> bytes:
    """A Parquet part as AWS writes it: BilledCost as double, Tags as a map, naive UTC timestamps."""
    ts = lambda day: dt.datetime(2022, 3, day)  # noqa: E731
    table = pa.table({
        "ProviderName": ["AWS"] * 4,
        "BillingAccountId": ["999999999999"] * 4,
        "SubAccountId": ["111111111111", "111111111111", "111111111111", "222222222222"],
        "BillingPeriodStart": pa.array([ts(1)] * 4, pa.timestamp("ms")),
        "ChargePeriodStart": pa.array([ts(5), ts(6), ts(6), ts(7)], pa.timestamp("ms")),
        "ChargeCategory": ["Usage"] * 4,
        "ChargeClass": [None] * 4,
        "ServiceName": [EC2, "Amazon Elastic File System", "Amazon Elastic File System",
                        "Amazon Simple Storage Service"],
        "BilledCost": pa.array([0.7, 1.1, 2.2, 0.25], pa.float64()),
        "BillingCurrency": ["USD"] * 4,
        "Tags": pa.array([[("user:2i2c:node-purpose", "user"), ("user:2i2c:hub-name", "prod")],
                          [("user:2i2c:hub-name", "staging")], [("user:2i2c:hub-name", "staging")], []],
                         pa.map_(pa.string(), pa.string())),
    })
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def upload_export(s3, csv_text: str | None = None, files=("csv", "parquet"), export=EXPORT, manifest_extra=None):
    """The month's export as Data Exports lays it out: data/ parts and metadata/ manifest."""
    name = export.rsplit("/", 1)[-1]
    data = f"{export}/data/BILLING_PERIOD=2022-03"
    parts = {"csv": (f"{data}/{name}-00001.csv.gz",
                     gzip.compress((csv_text or (FOCUS_DATA / "focus-2i2c-00001.csv").read_text()).encode())),
             "parquet": (f"{data}/{name}-00002.snappy.parquet", parquet_part())}
    for kind in files:
        key, body = parts[kind]
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    manifest = json.loads((FOCUS_DATA / "focus-2i2c-Manifest.json").read_text())
    manifest["dataFiles"] = [f"s3://{BUCKET}/{parts[kind][0]}" for kind in ("csv", "parquet")]
    manifest.update(manifest_extra or {})
    s3.put_object(Bucket=BUCKET, Key=f"{export}/metadata/BILLING_PERIOD=2022-03/{name}-Manifest.json",
                  Body=json.dumps(manifest).encode())


@pytest.fixture
def aws_s3():
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        yield s3


@pytest.mark.parametrize("prefix", ["exports", "exports/focus-2i2c", "/exports/"])
def test_focus_export_csv_and_parquet(tmp_path, aws_s3, prefix):
    upload_export(aws_s3)
    files = focus_source(tmp_path, prefix).fetch(MONTH)
    rows = read_rows(files)
    prod_user = json.dumps({TAG: "prod", "2i2c:node-purpose": "user"}, sort_keys=True)
    assert summary(rows) == [
        ("111111111111", "Credit", EC2, "{}", Decimal("-0.3")),
        ("111111111111", "Tax", EC2, "{}", Decimal("0.05")),
        ("111111111111", "Usage", EC2, prod_user, Decimal("1.0000000001")),        # CSV hours + Parquet, one day
        ("111111111111", "Usage", "Amazon Elastic File System", json.dumps({TAG: "staging"}), Decimal("3.3")),
        ("222222222222", "Usage", "Amazon Simple Storage Service", "{}", Decimal("0.25")),
    ]                                                                            # account 333... is not this cluster's
    assert sum(r["BilledCost"] for r in rows) == Decimal("4.3000000001")       # 1.1 + 2.2 stays 3.3, not float
    by_service = {r["ServiceName"]: r for r in rows}
    assert by_service["Amazon Elastic File System"]["ServiceCategory"] == "Storage"   # filled in: not in the Parquet
    efs_day = by_service["Amazon Elastic File System"]["ChargePeriodStart"]
    assert efs_day == dt.datetime(2022, 3, 6, tzinfo=dt.timezone.utc)                # hours summed per day
    assert {r["BillingPeriodStart"] for r in rows} == {dt.datetime(2022, 3, 1, tzinfo=dt.timezone.utc)}
    assert {r["BillingAccountId"] for r in rows} == {"999999999999"}
    assert files.fingerprint and not files.estimated


def test_focus_export_snapshot_is_reused_until_refresh(tmp_path, aws_s3):
    upload_export(aws_s3)
    source = focus_source(tmp_path)
    first = source.fetch(MONTH)
    for obj in aws_s3.list_objects_v2(Bucket=BUCKET)["Contents"]:
        aws_s3.delete_object(Bucket=BUCKET, Key=obj["Key"])

    assert source.fetch(MONTH) == first          # no S3 call: the export is gone, the snapshot is not
    with pytest.raises(SourceError, match="no FOCUS export"):
        source.fetch(MONTH, refresh=True)


def test_missing_export_is_named(tmp_path, aws_s3):
    with pytest.raises(SourceError, match=r"no FOCUS export for 2022-03 under s3://billing-exports/exports"):
        focus_source(tmp_path).fetch(MONTH)


def test_manifest_listing_a_missing_file(tmp_path, aws_s3):
    upload_export(aws_s3, files=("csv",))
    with pytest.raises(SourceError, match=r"lists s3://billing-exports/exports/focus-2i2c/data/BILLING_PERIOD=2022-03/"
                                          r"focus-2i2c-00002\.snappy\.parquet, which does not exist") as err:
        focus_source(tmp_path).fetch(MONTH)
    assert err.value.transient


def test_two_exports_under_the_prefix_need_a_narrower_prefix(tmp_path, aws_s3):
    upload_export(aws_s3)
    upload_export(aws_s3, export="exports/cur2")
    with pytest.raises(SourceError, match="several exports under s3://billing-exports/exports"):
        focus_source(tmp_path).fetch(MONTH)
    assert read_rows(focus_source(tmp_path, prefix=EXPORT).fetch(MONTH))


def test_non_numeric_cost_in_the_export_is_refused(tmp_path, aws_s3):
    csv_text = (FOCUS_DATA / "focus-2i2c-00001.csv").read_text().replace("0.05", "abc")
    upload_export(aws_s3, csv_text=csv_text)
    with pytest.raises(SourceError, match="column BilledCost holds 'abc', which is not a number"):
        focus_source(tmp_path).fetch(MONTH)


def test_export_without_a_required_column_is_refused(tmp_path, aws_s3):
    lines = (FOCUS_DATA / "focus-2i2c-00001.csv").read_text().splitlines()
    header = lines[0].split(",")
    drop = header.index("ChargeCategory")
    csv_text = "\n".join(",".join(c for i, c in enumerate(line.split(",")) if i != drop) for line in lines[:1])
    upload_export(aws_s3, csv_text=csv_text + "\n", files=("csv", "parquet"))
    with pytest.raises(SourceError, match=r"column\(s\) \['ChargeCategory'\] are missing"):
        focus_source(tmp_path).fetch(MONTH)


def test_s3_access_denied_names_the_permissions(tmp_path, aws_replay):
    replay = aws_replay("s3_access_denied", service="s3")
    expected = ("the credentials need s3:ListBucket on bucket 'billing-exports' "
                "and s3:GetObject on s3://billing-exports/exports/*")
    with pytest.raises(SourceError, match=re.escape(expected)) as err:
        focus_source(tmp_path).fetch(MONTH)
    replay.done()
    assert not err.value.transient


def test_focus_probe(tmp_path, aws_s3):
    upload_export(aws_s3)
    result = focus_source(tmp_path).check(MONTH)
    assert result.ok and result.warnings == ()
    assert "focus-2i2c-Manifest.json lists 2 file(s)" in result.detail


def test_focus_probe_warns_about_missing_tags(tmp_path, aws_s3):
    manifest = json.loads((FOCUS_DATA / "focus-2i2c-Manifest.json").read_text())
    upload_export(aws_s3, manifest_extra={"columns": [c for c in manifest["columns"] if c["name"] != "Tags"]})
    result = focus_source(tmp_path).check(MONTH)
    assert result.ok and any("no Tags column" in w for w in result.warnings)


def test_newest_manifest_wins_when_each_refresh_creates_new_files(tmp_path):
    """With "create new file" delivery, each execution has its own manifest; the latest is current."""
    old, new = dt.datetime(2022, 4, 2, tzinfo=dt.timezone.utc), dt.datetime(2022, 4, 9, tzinfo=dt.timezone.utc)
    folder = f"{EXPORT}/metadata/BILLING_PERIOD=2022-03"

    class Listing:
        def list_objects_v2(self, Bucket, Prefix, **_):
            keys = [(f"{folder}/exec-b/focus-2i2c-Manifest.json", new),
                    (f"{folder}/exec-a/focus-2i2c-Manifest.json", old)]
            return {"Contents": [{"Key": k, "LastModified": t} for k, t in keys if k.startswith(Prefix)],
                    "IsTruncated": False}

    key = focus_source(tmp_path, prefix=EXPORT)._find_manifest(Listing(), MONTH)
    assert key.endswith("exec-b/focus-2i2c-Manifest.json")


def test_tags_are_normalized():
    assert normalize_tags('{"user:b": "1", "a": "2"}', "x") == '{"a": "2", "b": "1"}'
    assert normalize_tags("", "x") == "{}" and normalize_tags(None, "x") == "{}"
    with pytest.raises(SourceError, match="not a JSON object"):
        normalize_tags("[1]", "x")
