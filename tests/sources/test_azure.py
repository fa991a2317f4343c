"""Azure Cost Management connector, offline through the real SDK.

The real CostManagementClient runs its whole pipeline (auth policy, headers,
error mapping) over a replay transport that answers each call from one JSON
file: tests/data/azure/<test name>/NNN.json, holding the expected request
(method, URL) and the recorded response (status, headers, body).

Re-recording (never in CI): with a real account at hand,

    BILLING_RECORD=1 AZURE_RECORD_SCOPE=/subscriptions/<id> \\
    [AZURE_RECORD_HUB_TAG=<your hub tag key>] [BILLING_RECORD_SCRUB=<id>,<id>] \\
    .venv/bin/python -m pytest tests/sources/test_azure.py

sends the queries to Azure with DefaultAzureCredential (the scope must be a
subscription; its id becomes the cluster's sub_accounts) and rewrites the
folders of the tests in RECORDABLE. While writing, every GUID (subscription,
tenant, principal) becomes a placeholder 00000000-0000-0000-0000-00000000000N
in order of appearance (the scope's subscription is the first, as the tests
expect), the real hub tag key becomes the tests' own, the strings in
BILLING_RECORD_SCRUB become "scrubbed", and only the headers the connector
reads are kept (no Authorization, cookies or request ids). The data is the
account's for the tests' month (MONTH below): review the diff and update the
expected values. Tests with hand-made fixtures (throttling, errors,
malformed answers; marked "note": "hand-made") are skipped while recording.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from decimal import Decimal
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pyarrow.parquet as pq
import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import HttpTransport, RequestsTransport
from azure.core.rest._requests_basic import RestRequestsTransportResponse
from azure.identity import CredentialUnavailableError

from billing.config import AzureCostManagementSource, Cluster, SplitRule
from billing.errors import SourceError
from billing.months import Month
from billing.sources import azure
from billing.sources.azure import CostManagementQuery, charge_category, retry_after_seconds
from billing.sources.base import SnapshotStore

DATA = Path(__file__).resolve().parent.parent / "data" / "azure"
RECORDING = os.environ.get("BILLING_RECORD") == "1"
MONTH = Month(2024, 5)
SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
SCOPE = f"/subscriptions/{SUBSCRIPTION}"
HUB_TAG = "2i2c:hub-name"
# Tests whose answers come from a real account when re-recording; the others are hand-made.
RECORDABLE = {"test_paging_follows_next_link", "test_untagged_rows_are_kept_with_empty_tags", "test_empty_month",
              "test_credits_and_tax_keep_their_own_rows", "test_snapshot_is_reused_until_refresh",
              "test_probe_reports_rows_and_total", "test_probe_warns_when_no_row_carries_the_hub_tag"}
# Tests that replay another test's answers (and are not recorded themselves).
SHARED_FOLDERS = {"test_amounts_survive_the_snapshot_exactly": "test_paging_follows_next_link"}


# ---- JSON with exact numbers ------------------------------------------------------------


def load_exact(text: str | bytes):
    """Parse JSON keeping every number token exact (Decimal); NaN is kept so malformed answers replay."""
    return json.loads(text, parse_float=Decimal)


def dump_exact(value, indent: int | None = None, level: int = 0) -> str:
    """JSON text in which each Decimal is written with its own digits (json.dumps would refuse it)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict) and value:
        items = [f"{json.dumps(k)}: {dump_exact(v, indent, level + 1)}" for k, v in value.items()]
    elif isinstance(value, list) and value:
        items = [dump_exact(v, indent if isinstance(v, (dict, list)) else None, level + 1) for v in value]
        if not any(isinstance(v, (dict, list)) for v in value):  # a row of scalars stays on one line
            indent = None
    else:
        return json.dumps(value)
    opening, closing = ("{", "}") if isinstance(value, dict) else ("[", "]")
    if indent is None:
        return opening + ", ".join(items) + closing
    pad, end = " " * indent * (level + 1), " " * indent * level
    return opening + "\n" + ",\n".join(pad + i for i in items) + "\n" + end + closing


# ---- transports -------------------------------------------------------------------------


def rest_response(request, status: int, headers: dict[str, str], content: bytes) -> RestRequestsTransportResponse:
    """An azure.core.rest response, built the way RequestsTransport builds one, from recorded parts."""
    raw = requests.Response()
    raw.status_code, raw.reason, raw.url = status, HTTPStatus(status).phrase, request.url
    raw.headers.update(headers)
    raw._content, raw._content_consumed = content, True
    return RestRequestsTransportResponse(request=request, internal_response=raw, block_size=4096)


class ReplayTransport(HttpTransport):
    """Answers the n-th call with the n-th recorded file, after checking it asks for the recorded URL."""

    def __init__(self, folder: Path):
        self.files = sorted(folder.glob("*.json"))
        self.requests: list = []

    def send(self, request, **kwargs):
        n = len(self.requests)
        if n >= len(self.files):
            raise AssertionError(f"unexpected call #{n + 1}: {request.method} {request.url}")
        recorded = load_exact(self.files[n].read_text())
        expected, sent = recorded["request"], urlparse(request.url)
        wanted = urlparse(expected["url"])
        assert (request.method, sent.netloc, sent.path) == (expected["method"], wanted.netloc, wanted.path), \
            f"call #{n + 1} differs from {self.files[n].name}"
        assert parse_qs(sent.query).get("$skiptoken") == parse_qs(wanted.query).get("$skiptoken")
        self.requests.append(request)
        body = recorded.get("body")
        content = b"" if body is None else dump_exact(body).encode()
        return rest_response(request, recorded["status"], recorded["headers"], content)

    def open(self):
        pass

    def close(self):
        pass

    def __exit__(self, *exc_info):
        pass


GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
KEPT_HEADERS = {"content-type", *(h.lower() for h in azure.RETRY_AFTER_HEADERS)}


class Scrubber:
    """Replaces account identifiers in recorded text, consistently across one test's files."""

    def __init__(self, replacements: dict[str, str]):
        self.replacements = replacements
        self.guids: dict[str, str] = {}

    def text(self, text: str) -> str:
        for real, fake in self.replacements.items():
            text = text.replace(real, fake)
        return GUID.sub(self._guid, text)

    def _guid(self, match: re.Match) -> str:
        return self.guids.setdefault(match.group(0).lower(), f"00000000-0000-0000-0000-{len(self.guids) + 1:012d}")

    def value(self, value):
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {self.text(k): self.value(v) for k, v in value.items()}
        return value


class RecordingTransport(HttpTransport):
    """Forwards to Azure and writes each exchange, scrubbed, as the next NNN.json of the folder."""

    def __init__(self, folder: Path, scrubber: Scrubber, inner: HttpTransport | None = None):
        self.folder, self.scrubber, self.inner, self.count = folder, scrubber, inner, 0
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.json"):
            old.unlink()

    def send(self, request, **kwargs):
        self.open()
        response = self.inner.send(request, **kwargs)
        content = response.read()
        self.count += 1
        headers = {k: v for k, v in response.headers.items() if k.lower() in KEPT_HEADERS}
        doc = {"request": {"method": request.method, "url": self.scrubber.text(request.url)},
               "status": response.status_code, "headers": headers,
               "body": self.scrubber.value(load_exact(content)) if content.strip() else None}
        (self.folder / f"{self.count:03d}.json").write_text(dump_exact(doc, indent=2) + "\n")
        return response

    def open(self):
        if self.inner is None:
            self.inner = RequestsTransport()
            self.inner.open()

    def close(self):
        if self.inner is not None:
            self.inner.close()
            self.inner = None

    def __exit__(self, *exc_info):
        self.close()


class FakeCredential:
    """A TokenCredential that hands out a token that never expires."""

    def get_token(self, *scopes, **kwargs):
        return AccessToken("fake-token", 32503680000)


class NoCredential:
    """What DefaultAzureCredential does when it finds nothing to log in with."""

    def get_token(self, *scopes, **kwargs):
        raise CredentialUnavailableError("EnvironmentCredential: environment variables are not fully configured")


# ---- fixtures ---------------------------------------------------------------------------


def fixture_folder(request) -> Path:
    name = request.node.originalname
    folder = DATA / SHARED_FOLDERS.get(name, name)
    callspec = getattr(request.node, "callspec", None)
    return folder / callspec.id if callspec else folder


@pytest.fixture
def azure_sleeps() -> list[float]:
    """The waits the connector asked for (nothing really sleeps)."""
    return []


@pytest.fixture
def azure_transport(request):
    folder = fixture_folder(request)
    if not RECORDING:
        return ReplayTransport(folder)
    if request.node.originalname not in RECORDABLE:
        pytest.skip("hand-made fixture; not re-recorded")
    real_tag = os.environ.get("AZURE_RECORD_HUB_TAG", HUB_TAG)
    replacements = {real_tag: HUB_TAG} if real_tag != HUB_TAG else {}
    replacements.update({s: "scrubbed" for s in os.environ.get("BILLING_RECORD_SCRUB", "").split(",") if s})
    return RecordingTransport(folder, Scrubber(replacements))


@pytest.fixture
def azure_source(tmp_path, azure_transport, azure_sleeps):
    """A factory of connectors for one test: replayed (or recording) transport, fake credential, no sleeping."""

    def make(*, credential=FakeCredential, scope: str = SCOPE, sub_accounts: tuple[str, ...] = (SUBSCRIPTION,),
             hub_tag: str = HUB_TAG) -> CostManagementQuery:
        if RECORDING:
            scope = os.environ["AZURE_RECORD_SCOPE"]
            sub_accounts = (scope.split("/")[2],)
            hub_tag = os.environ.get("AZURE_RECORD_HUB_TAG", HUB_TAG)
        cluster = Cluster(
            id="azure-shared", provider="azure", billing_account="ea-0000001", sub_accounts=sub_accounts,
            tenancy="shared", split=SplitRule(), hub_tag=hub_tag,
            source=AzureCostManagementSource(type="azure_cost_management", scope=scope),
        )
        return CostManagementQuery(
            cluster=cluster, org=None, snapshots=SnapshotStore(tmp_path / "snapshots"),
            credential_factory=azure.default_credential if RECORDING else credential,
            transport=azure_transport, sleep=time.sleep if RECORDING else azure_sleeps.append,
        )

    return make


def utc(day: int) -> dt.datetime:
    return dt.datetime(2024, 5, day, tzinfo=dt.timezone.utc)


def sent_body(request) -> dict:
    return json.loads(request.content)


def summary(records) -> list[tuple]:
    return [(r["SubAccountId"], r["ChargePeriodStart"], r["ChargeCategory"], r["ServiceName"], r["BilledCost"],
             r["BillingCurrency"], r["Tags"]) for r in records]


# ---- the two-step query and paging ------------------------------------------------------


def test_paging_follows_next_link(azure_source, azure_transport):
    records = azure_source().fetch_records(MONTH)

    discovery, detail, *later = azure_transport.requests
    assert len(later) == 2
    asked = sent_body(discovery)
    assert asked["type"] == "ActualCost" and asked["timeframe"] == "Custom"
    assert asked["timePeriod"] == {"from": "2024-05-01T00:00:00Z", "to": "2024-05-31T23:59:59Z"}
    assert asked["dataset"]["granularity"] == "Daily"
    assert asked["dataset"]["aggregation"] == {"totalCost": {"name": "Cost", "function": "Sum"}}
    assert asked["dataset"]["grouping"] == [{"type": "Dimension", "name": "SubscriptionId"},
                                            {"type": "Dimension", "name": "ChargeType"}]
    assert asked["dataset"]["filter"] == {"dimensions": {"name": "SubscriptionId", "operator": "In",
                                                         "values": [SUBSCRIPTION]}}
    asked = sent_body(detail)
    assert asked["dataset"]["grouping"] == [{"type": "TagKey", "name": HUB_TAG},
                                            {"type": "Dimension", "name": "ServiceName"}]
    assert asked["dataset"]["filter"] == {"and": [
        {"dimensions": {"name": "SubscriptionId", "operator": "In", "values": [SUBSCRIPTION]}},
        {"dimensions": {"name": "ChargeType", "operator": "In", "values": ["Usage"]}}]}
    # The next pages POST the very same body to the nextLink the previous page returned.
    assert [parse_qs(urlparse(c.url).query)["$skiptoken"] for c in later] == [["AQAAAA=="], ["AgAAAA=="]]
    assert all(c.method == "POST" and c.content == detail.content for c in later)

    # Columns are read by name: page 3 lists them in another order.
    assert summary(records) == [
        (SUBSCRIPTION, utc(1), "Usage", "Azure Kubernetes Service", Decimal("12345678901234567.891"), "USD",
         {HUB_TAG: "staging"}),
        (SUBSCRIPTION, utc(2), "Usage", "Storage", Decimal("0.1"), "USD", {HUB_TAG: "prod"}),
        (SUBSCRIPTION, utc(2), "Usage", "Virtual Network", Decimal("0.2"), "USD", {}),
        (SUBSCRIPTION, utc(2), "Usage", "Storage", Decimal("0.30000000000000004"), "USD", {HUB_TAG: "prod"}),
        (SUBSCRIPTION, utc(31), "Usage", "Bandwidth", Decimal("1E-7"), "USD", {HUB_TAG: "staging"}),
        (SUBSCRIPTION, utc(31), "Usage", "Azure Kubernetes Service", Decimal(7), "USD", {HUB_TAG: "prod"}),
    ]
    first = records[0]
    assert (first["ProviderName"], first["BillingAccountId"], first["BillingPeriodStart"]) == (
        "Microsoft", "ea-0000001", utc(1))
    assert first["ServiceCategory"] == "Compute" and first["ChargeClass"] is None
    assert not any(r["x_Estimated"] for r in records)  # May 2024 is over


def test_amounts_survive_the_snapshot_exactly(azure_source):
    """The snapshot Parquet holds the digits Azure sent; no float ever touched them."""
    files = azure_source().fetch(MONTH)

    table = pq.read_table(files.paths[0])
    costs = table.column("BilledCost").to_pylist()
    assert costs[0] == Decimal("12345678901234567.891")
    assert costs[1] + costs[2] == Decimal("0.3") and costs[4] == Decimal("0.0000001")
    assert table.column("Tags").to_pylist()[:3] == ['{"2i2c:hub-name": "staging"}', '{"2i2c:hub-name": "prod"}', "{}"]


def test_billing_account_scope_reads_each_subscription(azure_source, azure_transport):
    other = "abcdef01-0000-0000-0000-0000000000ab"
    scope = "/providers/Microsoft.Billing/billingAccounts/0000001"
    records = azure_source(scope=scope, sub_accounts=(SUBSCRIPTION, other)).fetch_records(MONTH)

    filters = [sent_body(c)["dataset"]["filter"] for c in azure_transport.requests]
    assert filters[0]["dimensions"]["values"] == [SUBSCRIPTION, other]
    # Each detail query asks for the subscription as discovery spelled it.
    assert [f["and"][0]["dimensions"]["values"] for f in filters[1:]] == [[SUBSCRIPTION], [other.upper()]]
    assert [(r["SubAccountId"], r["BilledCost"], r["Tags"]) for r in records] == [
        (SUBSCRIPTION, Decimal("5.5"), {HUB_TAG: "staging"}), (other, Decimal("2.25"), {HUB_TAG: "prod"})]


def test_discovery_outside_the_filter_is_refused(azure_source):
    with pytest.raises(SourceError, match=r"column 'SubscriptionId' names '99999999-.*which the filter excluded"):
        azure_source().fetch_records(MONTH)


def test_detail_that_does_not_add_up_fails_as_transient(azure_source):
    with pytest.raises(SourceError, match=r"add up to 9.00 USD but the total is 10.00 USD") as err:
        azure_source().fetch_records(MONTH)
    assert err.value.transient


def test_next_link_to_another_host_is_refused(azure_source, azure_transport):
    with pytest.raises(SourceError, match=r"page 1: refusing to follow nextLink to https://collector\.example\.net"):
        azure_source().fetch_records(MONTH)
    assert len(azure_transport.requests) == 2


# ---- throttling and transient faults ----------------------------------------------------


def test_throttling_honours_the_largest_retry_after(azure_source, azure_transport, azure_sleeps):
    records = azure_source().fetch_records(MONTH)

    assert azure_sleeps == [17.0]  # the qpu header's 17 s, not Retry-After's 3 s
    # One 429, then only that page again; azure-core did not retry on its own.
    urls = [c.url for c in azure_transport.requests]
    assert len(urls) == 4 and urls[2] == urls[3] != urls[1]
    assert [r["BilledCost"] for r in records] == [Decimal("10.5"), Decimal("2.25")]


def test_server_errors_are_retried(azure_source, azure_transport, azure_sleeps):
    records = azure_source().fetch_records(MONTH)

    assert len(azure_transport.requests) == 3
    assert len(azure_sleeps) == 1 and 1.0 <= azure_sleeps[0] <= 1.25  # backoff: no hint was given
    assert [r["BilledCost"] for r in records] == [Decimal("1.5")]


def test_retry_after_reads_every_throttling_header():
    assert retry_after_seconds({}) == 0.0
    assert retry_after_seconds({"Retry-After": "4"}) == 4.0
    assert retry_after_seconds({"Retry-After": "4",
                                "x-ms-ratelimit-microsoft.costmanagement-tenant-retry-after": "30"}) == 30.0
    assert retry_after_seconds({"Retry-After": "soon"}) == 0.0
    assert retry_after_seconds({"Retry-After": "nan"}) == 0.0
    assert retry_after_seconds({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # already past
    in_a_minute = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=60)
    assert 50 < retry_after_seconds({"Retry-After": in_a_minute.strftime("%a, %d %b %Y %H:%M:%S GMT")}) <= 60


# ---- charge categories, tags, empty months ----------------------------------------------


def test_credits_and_tax_keep_their_own_rows(azure_source, azure_transport):
    records = azure_source().fetch_records(MONTH)

    charge_types = [sent_body(c)["dataset"]["filter"]["and"][1]["dimensions"]["values"]
                    for c in azure_transport.requests[1:]]
    assert charge_types == [["Usage"], ["Refund"], ["Tax"], ["Purchase"], ["RoundingAdjustment"]]
    assert [(r["ChargeCategory"], r["BilledCost"], r["BillingCurrency"], r["Tags"]) for r in records] == [
        ("Usage", Decimal("100.00"), "EUR", {HUB_TAG: "staging"}),
        ("Credit", Decimal("-25.50"), "EUR", {HUB_TAG: "staging"}),  # a refund stays negative, on its own row
        ("Tax", Decimal("8.25"), "EUR", {}),
        ("Purchase", Decimal(300), "EUR", {}),
        ("Adjustment", Decimal("-0.01"), "EUR", {}),
    ]
    assert sum((r["BilledCost"] for r in records), Decimal(0)) == Decimal("382.74")


@pytest.mark.parametrize("charge_type, category", [
    ("Usage", "Usage"), ("Purchase", "Purchase"), ("Refund", "Credit"), ("Tax", "Tax"),
    ("UnusedReservation", "Usage"), ("UnusedSavingsPlan", "Usage"), ("RoundingAdjustment", "Adjustment"),
    ("SomethingNew", "Adjustment"), ("usage", "Usage")])
def test_charge_type_to_focus_category(charge_type, category):
    assert charge_category(charge_type) == category


def test_untagged_rows_are_kept_with_empty_tags(azure_source):
    files = azure_source().fetch(MONTH)

    table = pq.read_table(files.paths[0])
    assert table.column("Tags").to_pylist() == ["{}"]  # the zero-cost row is not kept
    assert table.column("BilledCost").to_pylist() == [Decimal("4.75")]


def test_empty_month(azure_source, azure_transport):
    files = azure_source().fetch(MONTH)

    assert pq.read_table(files.paths[0]).num_rows == 0
    assert len(azure_transport.requests) == 1  # nothing discovered, nothing more asked


# ---- what retrying cannot fix -----------------------------------------------------------


def test_forbidden_fails_at_once(azure_source, azure_transport, azure_sleeps):
    with pytest.raises(SourceError) as err:
        azure_source().fetch_records(MONTH)

    message = str(err.value)
    assert "HTTP 403: AuthorizationFailed" in message and f"Cost Management Reader role on {SCOPE}" in message
    assert not err.value.transient
    assert len(azure_transport.requests) == 1 and azure_sleeps == []


def test_unknown_scope_fails_at_once(azure_source, azure_transport, azure_sleeps):
    with pytest.raises(SourceError, match=r"HTTP 404: SubscriptionNotFound.*Check clusters\.source\.scope"):
        azure_source().fetch_records(MONTH)
    assert len(azure_transport.requests) == 1 and azure_sleeps == []


def test_missing_credentials_say_how_to_log_in(azure_source, azure_transport):
    with pytest.raises(SourceError, match=r"az login.*AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET"):
        azure_source(credential=NoCredential).fetch_records(MONTH)
    assert azure_transport.requests == []  # nothing was sent without a token


def test_sub_accounts_must_be_subscription_ids(azure_source, azure_transport):
    with pytest.raises(SourceError, match=r"sub_accounts: 'research-sub' is not an Azure subscription id"):
        azure_source(sub_accounts=("research-sub",)).fetch_records(MONTH)
    assert azure_transport.requests == []


MALFORMED = {
    "missing_cost_column": r"page 1: column one of \['Cost', 'PreTaxCost'.*is missing",
    "non_numeric_cost": r"page 1, row 0: column 'Cost' is not a number: '12,50'",
    "unknown_currency": r"page 1, row 0: column 'Currency' is not a currency code: 'US\$'",
    "date_outside_month": r"page 1, row 0: column 'UsageDate' 20240601 is outside 2024-05",
    "nan_cost": r"page 1: the response is not valid JSON \(NaN is not a number",
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_response(azure_source, case):
    with pytest.raises(SourceError, match=MALFORMED[case]):
        azure_source().fetch_records(MONTH)


# ---- snapshots and probe ----------------------------------------------------------------


def test_snapshot_is_reused_until_refresh(azure_source, azure_transport):
    source = azure_source()
    first = source.fetch(MONTH)
    assert source.fetch(MONTH) == first
    assert len(azure_transport.requests) == 2  # the second fetch asked nothing

    refreshed = source.fetch(MONTH, refresh=True)
    assert len(azure_transport.requests) == 4
    assert refreshed.fingerprint == first.fingerprint


def test_probe_reports_rows_and_total(azure_source, azure_transport):
    result = azure_source().check(MONTH)

    assert result.ok, result.detail
    assert "3 row(s), 123.01 EUR" in result.detail and "2 value(s) of tag '2i2c:hub-name'" in result.detail
    assert result.warnings == ()
    asked = sent_body(azure_transport.requests[0])["dataset"]
    assert asked["grouping"] == [{"type": "TagKey", "name": HUB_TAG}]


def test_probe_warns_when_no_row_carries_the_hub_tag(azure_source):
    result = azure_source().check(MONTH)

    assert result.ok and "0 value(s) of tag" in result.detail
    assert len(result.warnings) == 1 and f"no cost in 2024-05 carries the tag {HUB_TAG!r}" in result.warnings[0]


def test_recorder_scrubs_ids_and_keeps_every_digit(tmp_path, azure_source):
    """The re-record path, run offline: a recorder in front of the paging test's answers."""
    replay = ReplayTransport(DATA / "test_paging_follows_next_link")
    recorder = RecordingTransport(tmp_path / "recorded", Scrubber({"staging": "hub-a"}), inner=replay)
    source = azure_source()
    source.transport = recorder
    source.fetch_records(MONTH)

    files = sorted((tmp_path / "recorded").glob("*.json"))
    assert [f.name for f in files] == ["001.json", "002.json", "003.json", "004.json"]
    discovery, detail, page2 = (load_exact(f.read_text()) for f in files[:3])
    assert set(detail["headers"]) == {"Content-Type"}  # no Authorization, no request ids
    assert discovery["body"]["properties"]["rows"][0] == [
        Decimal("12345678901234567.891"), 20240501, "00000000-0000-0000-0000-000000000001", "Usage", "USD"]
    assert detail["body"]["properties"]["rows"][0][3] == "hub-a"
    assert detail["body"]["properties"]["nextLink"] == page2["request"]["url"]
    assert "12345678901234567.891" in files[1].read_text() and "1E-7" in files[3].read_text()


def test_credentials_are_created_only_when_needed(tmp_path):
    created = []
    cluster = Cluster(id="c", provider="azure", billing_account="b", sub_accounts=(SUBSCRIPTION,),
                      tenancy="shared", split=SplitRule(), hub_tag=HUB_TAG,
                      source=AzureCostManagementSource(type="azure_cost_management", scope=SCOPE))
    CostManagementQuery(cluster=cluster, org=None, snapshots=SnapshotStore(tmp_path),
                        credential_factory=lambda: created.append(1))
    assert created == []
