"""The GCP connector, offline, through the real SDK clients.

How the responses are replayed
------------------------------
The connector builds its SDK clients in one factory method,
`BigQueryExport.make_clients`; the tests replace it with real clients
(`bigquery.Client` and `CloudBillingClient(transport="rest")`) whose HTTP
sessions have a `GcpTape` transport adapter mounted. The adapter answers
each HTTP call with the next file of `tests/data/gcp/<test name>/`, one JSON
file per call in call order:

    {"request":  {"method": "POST", "path": "/bigquery/v2/projects/.../queries",
                  "params": {"pageToken": "..."}},            # params: optional
     "response": {"status": 200, "headers": {...}, "body": {...}}}

It checks that each call is the one recorded (method, path, listed params),
that every query sent carries named parameters and no month or project id as
a literal, and, at the end of the test, that every recorded call was made.

Re-recording
------------
    BILLING_RECORD=1 \\
    BILLING_RECORD_TABLE=<real project>.<dataset>.gcp_billing_export_v1_<ACCOUNT> \\
    BILLING_RECORD_ACCOUNT=<real billing account id> \\
    BILLING_RECORD_PROJECTS=<real id>=hub-project-a,<real id>=hub-project-b,<real id>=hub-project-c \\
    .venv/bin/python -m pytest tests/sources/test_gcp.py -k <test>

runs the named tests against the real APIs with application default
credentials. The adapter maps the test's ids to the real ones on the way out,
and on the way back replaces real ids with the test's (table, dataset and
project of the export, billing account, projects; other linked projects
become other-project-N; e-mail addresses become recorder@example.com), then
writes the files. Request headers (the token) are never written. Tests whose
responses are hand-made (errors, throttling, malformed data) are skipped.
Review the files and update the expected figures before committing.
"""
from __future__ import annotations

import json
import logging
import os
import re
import socket
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pyarrow.parquet as pq
import pytest
import requests
from google.api_core import exceptions as api_errors
from google.auth.credentials import AnonymousCredentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import bigquery
from google.cloud.billing_v1 import CloudBillingClient
from requests.adapters import BaseAdapter, HTTPAdapter

from billing.config import parse_organization
from billing.errors import SourceError
from billing.months import Month
from billing.sources import make_source
from billing.sources.base import SnapshotStore, month_is_open
from billing.sources.gcp import MONTH_QUERY, BigQueryExport, GcpClients, transient_wait
from helpers import small_org_data

DATA = Path(__file__).resolve().parent.parent / "data" / "gcp"
RECORD = os.environ.get("BILLING_RECORD") == "1"
handmade = pytest.mark.skipif(RECORD, reason="hand-made responses (errors, throttling): nothing to record")

MONTH = Month(2024, 3)
ACCOUNT = "000000-AAAAAA-000000"
EXPORT_PROJECT, EXPORT_DATASET = "billing-admin-proj", "billing_export"
DETAILED_TABLE = f"{EXPORT_PROJECT}.{EXPORT_DATASET}.gcp_billing_export_resource_v1_000000_AAAAAA_000000"
STANDARD_TABLE = f"{EXPORT_PROJECT}.{EXPORT_DATASET}.gcp_billing_export_v1_000000_AAAAAA_000000"
PROJECTS = ("hub-project-a", "hub-project-b", "hub-project-c")
HUB_LABEL = "k8s-namespace"
QUERIES_PATH = f"/bigquery/v2/projects/{EXPORT_PROJECT}/queries"


# ---- the organization under test ---------------------------------------------------


def gcp_org(tmp_path: Path):
    """The small test organization plus two GCP clusters on one billing account."""
    data = small_org_data()
    data["clusters"] += [
        {"id": "gke-shared", "provider": "gcp", "billing_account": ACCOUNT, "sub_accounts": list(PROJECTS[:2]),
         "tenancy": "shared", "hub_tag": HUB_LABEL, "split": {"rule": "usage"},
         "source": {"type": "gcp_bigquery", "table": DETAILED_TABLE, "location": "US"}},
        {"id": "gke-beta", "provider": "gcp", "billing_account": ACCOUNT, "sub_accounts": [PROJECTS[2]],
         "tenancy": "dedicated", "community": "beta", "hub_tag": HUB_LABEL,
         "source": {"type": "gcp_bigquery", "table": STANDARD_TABLE}},
    ]
    data["hubs"] += [
        {"id": "alpha-gke", "cluster": "gke-shared", "community": "alpha", "tag_value": "staging"},
        {"id": "beta-gke-shared", "cluster": "gke-shared", "community": "beta", "tag_value": "prod"},
        {"id": "beta-gke", "cluster": "gke-beta", "community": "beta", "tag_value": "beta"},
    ]
    return parse_organization(data, "test-org.yaml", tmp_path)


# ---- replaying (and recording) HTTP calls ------------------------------------------


class Scrubber:
    """Maps real ids to the test's ids in recorded text, and the test's ids back to real ones in requests."""

    EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
    PROJECT_REF = re.compile(r'"projectId":\s*"([^"]+)"|projects/([a-z][a-z0-9-]{4,28}[a-z0-9])')

    def __init__(self, real_to_fake: dict[str, str]):
        self.real_to_fake = dict(real_to_fake)
        self.others = 0

    @classmethod
    def from_env(cls) -> "Scrubber":
        project, dataset, table = os.environ["BILLING_RECORD_TABLE"].split(".")
        account = os.environ["BILLING_RECORD_ACCOUNT"].removeprefix("billingAccounts/")
        pairs = {project: EXPORT_PROJECT, dataset: EXPORT_DATASET, account: ACCOUNT,
                 account.replace("-", "_"): ACCOUNT.replace("-", "_"),
                 table: (DETAILED_TABLE if "_resource_" in table else STANDARD_TABLE).split(".")[2]}
        for pair in filter(None, os.environ.get("BILLING_RECORD_PROJECTS", "").split(",")):
            real, fake = pair.split("=")
            pairs[real.strip()] = fake.strip()
        return cls(pairs)

    @staticmethod
    def _replace(text: str, mapping: dict[str, str]) -> str:
        if not mapping:
            return text
        words = "|".join(re.escape(k) for k in sorted(mapping, key=len, reverse=True))
        return re.sub(rf"(?<![A-Za-z0-9_-])({words})(?![A-Za-z0-9_-])", lambda m: mapping[m.group(1)], text)

    def to_fake(self, text: str) -> str:
        fakes = set(self.real_to_fake.values())
        for match in self.PROJECT_REF.finditer(text):
            project = match.group(1) or match.group(2)
            if project not in self.real_to_fake and project not in fakes:
                self.others += 1
                self.real_to_fake[project] = f"other-project-{self.others}"
        return self.EMAIL.sub("recorder@example.com", self._replace(text, self.real_to_fake))

    def to_real(self, text: str) -> str:
        return self._replace(text, {fake: real for real, fake in self.real_to_fake.items()})


def _query_text(body: dict) -> tuple[str | None, list]:
    """The SQL and parameters of a jobs.query or jobs.insert request body."""
    if "query" in body:
        return body["query"], body.get("queryParameters", [])
    query = body.get("configuration", {}).get("query")
    return (query["query"], query.get("queryParameters", [])) if query else (None, [])


def _call_name(url: str) -> str:
    """A short name for a file: queries, jobs or billing_projects."""
    if "cloudbilling" in url:
        return "billing_projects"
    parts = urlparse(url).path.split("/")  # /bigquery/v2/projects/<project>/<collection>[/<id>]
    return parts[5] if len(parts) > 5 else "call"


class GcpTape(BaseAdapter):
    """A requests transport adapter that replays (or records) one test's HTTP calls."""

    def __init__(self, folder: Path, forbidden_literals: tuple[str, ...], scrubber: Scrubber | None = None):
        super().__init__()
        self.folder = folder
        self.forbidden = forbidden_literals
        self.scrubber = scrubber
        self.upstream = HTTPAdapter() if scrubber else None
        self.files = [] if scrubber else sorted(folder.glob("*.json"))
        self.calls: list[dict] = []  # what the SDK sent: method, path, params, JSON body

    # the two SDK clients, wired to this tape ---------------------------------------
    def clients(self, project: str) -> GcpClients:
        if self.scrubber:
            import google.auth

            credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        else:
            credentials = AnonymousCredentials()
        session = AuthorizedSession(credentials)
        session.mount("https://", self)
        bq = bigquery.Client(project=project, credentials=credentials, _http=session)
        billing = CloudBillingClient(transport="rest", credentials=credentials)
        billing._transport._session.mount("https://", self)  # the REST transport's requests session
        return GcpClients(bq, billing)

    # requests' adapter interface ---------------------------------------------------
    def send(self, request, **kwargs):
        url = urlparse(request.url)
        body = json.loads(request.body) if request.body else None
        call = {"method": request.method, "path": url.path, "params": parse_qs(url.query), "body": body}
        self.calls.append(call)
        self._check_query(body)
        if self.scrubber:
            return self._record(request, call, **kwargs)
        assert self.files, f"unexpected call {request.method} {url.path}: no recorded response left in {self.folder}"
        path = self.files.pop(0)
        recorded = json.loads(path.read_text())
        expected = recorded["request"]
        assert (call["method"], call["path"]) == (expected["method"], expected["path"]), f"{path.name}: other call"
        for name, value in expected.get("params", {}).items():
            assert call["params"].get(name) == [value], f"{path.name}: parameter {name} should be {value!r}"
        reply = recorded["response"]
        return self._response(request, reply["status"], reply.get("headers", {}), json.dumps(reply["body"]))

    def close(self):
        if self.upstream:
            self.upstream.close()

    # ------------------------------------------------------------------------------
    def _check_query(self, body):
        sql, params = _query_text(body or {})
        if sql is None:
            return
        assert params, "the query has no parameters"
        for literal in self.forbidden:
            assert literal not in sql, f"{literal!r} is written into the SQL instead of passed as a parameter"

    @staticmethod
    def _response(request, status: int, headers: dict, text: str) -> requests.Response:
        response = requests.Response()
        response.status_code = status
        response.reason = "replayed"
        response.headers.update({"Content-Type": "application/json; charset=UTF-8", **headers})
        response._content = text.encode()
        response.encoding = "utf-8"
        response.url = request.url
        response.request = request
        return response

    def _record(self, request, call: dict, **kwargs) -> requests.Response:
        outgoing = request.copy()
        outgoing.prepare_url(self.scrubber.to_real(request.url), None)
        if request.body:
            raw = request.body.decode() if isinstance(request.body, bytes) else request.body
            outgoing.prepare_body(self.scrubber.to_real(raw).encode(), None)
        real = self.upstream.send(outgoing, **kwargs)
        text = self.scrubber.to_fake(real.text)
        try:
            body = json.loads(text)
        except ValueError:
            body = {"unparsed": text}
        headers = {k: real.headers[k] for k in ("Retry-After",) if k in real.headers}
        n = len(list(self.folder.glob("*.json"))) + 1
        name = _call_name(request.url)
        page = {k: v[0] for k, v in call["params"].items() if k == "pageToken"}
        record = {"request": {"method": call["method"], "path": self.scrubber.to_fake(call["path"]),
                              **({"params": page} if page else {})},
                  "response": {"status": real.status_code, **({"headers": headers} if headers else {}), "body": body}}
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{n:02d}-{name}.json").write_text(json.dumps(record, indent=2) + "\n")
        return self._response(request, real.status_code, headers, text)

    def assert_used_up(self):
        assert not self.files, f"recorded calls never made: {[p.name for p in self.files]}"

    def queries(self) -> list[dict]:
        return [c for c in self.calls if c["body"] and _query_text(c["body"])[0]]


@pytest.fixture(autouse=True)
def gcp_no_network(monkeypatch):
    """Offline tests must not open a connection (record mode excepted)."""
    if RECORD:
        return

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access in an offline test: {args[1:] if len(args) > 1 else args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def gcp_tape(request):
    folder = DATA / request.node.name
    if RECORD:
        for old in folder.glob("*.json"):
            old.unlink()
    month_literals = (f"{MONTH.year}{MONTH.month:02d}", str(MONTH))
    tape = GcpTape(folder, month_literals + PROJECTS + (HUB_LABEL, ACCOUNT), Scrubber.from_env() if RECORD else None)
    yield tape
    if not RECORD:
        tape.assert_used_up()


@pytest.fixture
def gcp_source(gcp_tape, tmp_path):
    """Build the connector for a cluster of the test organization, on the tape, with instant retries."""
    org = gcp_org(tmp_path)
    sleeps: list[float] = []

    def build(cluster_id: str = "gke-shared") -> BigQueryExport:
        source = make_source(org.cluster(cluster_id), org, SnapshotStore(tmp_path / "snapshots"))
        assert isinstance(source, BigQueryExport)
        source.make_clients = gcp_tape.clients
        source.sleep = sleeps.append
        source.sleeps = sleeps
        return source

    return build


def read_rows(files) -> list[dict]:
    return pq.read_table(files.paths[0]).to_pylist()


def total(rows, category=None) -> Decimal:
    return sum((r["BilledCost"] for r in rows if category in (None, r["ChargeCategory"])), Decimal(0))


# ---- fetching a month ----------------------------------------------------------------


def test_fetch_reads_every_result_page(gcp_source, gcp_tape):
    files = gcp_source().fetch(MONTH)

    rows = read_rows(files)
    assert len(rows) == 5
    assert total(rows) == Decimal("1187.654321")
    assert {r["SubAccountId"] for r in rows} == {"hub-project-a", "hub-project-b"}
    first = rows[0]
    assert first["ProviderName"] == "Google Cloud" and first["BillingAccountId"] == ACCOUNT
    assert first["BillingPeriodStart"].isoformat() == "2024-03-01T00:00:00+00:00"
    assert first["x_Source"] == "cluster 'gke-shared' (gcp_bigquery)" and first["x_Estimated"] is False
    assert {r["ServiceName"]: r["ServiceCategory"] for r in rows} == {
        "Compute Engine": "Compute", "Kubernetes Engine": "Compute", "Cloud Storage": "Storage",
        "Networking": "Networking"}
    # pages 2 and 3 were asked for with the tokens the previous pages gave
    assert [c["params"].get("pageToken") for c in gcp_tape.calls if "/queries/" in c["path"]] == [
        ["page-2-token"], ["page-3-token"]]


def test_fetch_sends_one_parameterized_query(gcp_source, gcp_tape):
    gcp_source().fetch(MONTH)

    [query] = gcp_tape.queries()
    body = query["body"]
    assert query["path"] == QUERIES_PATH and body["location"] == "US" and body["useLegacySql"] is False
    assert f"FROM `{DETAILED_TABLE}`" in body["query"]
    assert body["query"] == MONTH_QUERY.format(table=DETAILED_TABLE)
    params = {p["name"]: p for p in body["queryParameters"]}
    assert params["invoice_month"]["parameterValue"] == {"value": "202403"}
    assert [v["value"] for v in params["projects"]["parameterValue"]["arrayValues"]] == list(PROJECTS[:2])
    assert params["hub_label"]["parameterValue"] == {"value": HUB_LABEL}


@handmade
def test_fetch_retries_throttling_then_succeeds(gcp_source, gcp_tape, caplog):
    source = gcp_source()
    files = source.fetch(MONTH)

    assert total(read_rows(files)) == Decimal("42.50")
    assert len(source.sleeps) == 2
    assert source.sleeps[0] >= 7  # the 429 said Retry-After: 7
    assert "transient error (TooManyRequests)" in caplog.text and "transient error (Forbidden)" in caplog.text


@handmade
def test_fetch_gives_up_after_bounded_retries(gcp_source, tmp_path):
    source = gcp_source()
    with pytest.raises(SourceError, match="gave up after 5 attempts: ServiceUnavailable") as err:
        source.fetch(MONTH)

    assert err.value.transient and len(source.sleeps) == 4
    assert not (tmp_path / "snapshots").exists()


def test_fetch_keeps_credits_tax_and_adjustments_as_own_rows(gcp_source):
    rows = read_rows(gcp_source().fetch(MONTH))

    by_category = {c: total(rows, c) for c in ("Usage", "Credit", "Tax", "Adjustment")}
    assert by_category == {"Usage": Decimal("300.00"), "Credit": Decimal("-37.75"), "Tax": Decimal("21.50"),
                           "Adjustment": Decimal("-4.999997")}
    credits = [r for r in rows if r["ChargeCategory"] == "Credit"]
    assert len(credits) == 3 and all(r["BilledCost"] < 0 for r in credits)
    assert total(rows) == Decimal("278.750003")  # the invoice total: credits subtract, they do not vanish


def test_unlabeled_rows_stay_with_empty_tags(gcp_source):
    rows = read_rows(gcp_source().fetch(MONTH))

    tags = sorted((json.loads(r["Tags"]).get(HUB_LABEL, "<none>"), r["BilledCost"]) for r in rows)
    assert tags == [("<none>", Decimal("18.40")), ("prod", Decimal("250.00")), ("staging", Decimal("120.00"))]
    assert [r["Tags"] for r in rows if r["BilledCost"] == Decimal("18.40")] == ["{}"]


def test_empty_month_gives_an_empty_snapshot(gcp_source, caplog):
    files = gcp_source().fetch(MONTH)

    assert read_rows(files) == []
    assert "has no rows for invoice month 2024-03" in caplog.text


@handmade
def test_non_numeric_cost_names_the_field(gcp_source, tmp_path):
    with pytest.raises(SourceError, match=r"row 1: field 'cost' is 'n/a'; expected a decimal number"):
        gcp_source().fetch(MONTH)
    assert not (tmp_path / "snapshots").exists()


@handmade
def test_missing_column_names_the_column(gcp_source):
    with pytest.raises(SourceError, match=r"row 0: column\(s\) currency missing"):
        gcp_source().fetch(MONTH)


@handmade
def test_table_not_found_fails_at_once_with_a_hint(gcp_source):
    source = gcp_source()
    with pytest.raises(SourceError) as err:
        source.fetch(MONTH)

    assert f"table {DETAILED_TABLE} not found" in str(err.value)
    assert "is the billing export enabled and the table name right?" in str(err.value)
    assert source.sleeps == [] and not err.value.transient


@handmade
def test_permission_denied_names_the_roles(gcp_source):
    with pytest.raises(SourceError, match="roles/bigquery.dataViewer on the dataset and "
                                          "roles/bigquery.jobUser on the project"):
        gcp_source().fetch(MONTH)


@handmade
def test_bad_query_says_which_columns_are_used(gcp_source):
    with pytest.raises(SourceError, match=r"Unrecognized name: invoice.*both the standard and the detailed"):
        gcp_source("gke-beta").fetch(MONTH)


def test_missing_application_default_credentials(tmp_path, monkeypatch):
    org = gcp_org(tmp_path)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))
    source = make_source(org.cluster("gke-shared"), org, SnapshotStore(tmp_path / "snapshots"))

    with pytest.raises(SourceError, match="no application default credentials: run `gcloud auth "
                                          "application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"):
        source.fetch(MONTH)


def test_table_name_is_checked_again_before_it_enters_the_sql(tmp_path, gcp_tape):
    org = gcp_org(tmp_path)
    cluster = org.cluster("gke-shared")
    bad_source = cluster.source.model_copy(update={"table": DETAILED_TABLE + "` WHERE TRUE --"})
    source = make_source(cluster.model_copy(update={"source": bad_source}), org, SnapshotStore(tmp_path))
    source.make_clients = gcp_tape.clients

    with pytest.raises(SourceError, match="is not a billing export table name"):
        source.fetch(MONTH)
    assert gcp_tape.calls == []


@pytest.mark.parametrize("error, wait", [
    (api_errors.ServiceUnavailable("down"), 0.0),
    (api_errors.GatewayTimeout("slow"), 0.0),
    (api_errors.BadRequest("job failed", errors=[{"reason": "backendError"}]), 0.0),
    (requests.ConnectionError("reset"), 0.0),
    (requests.Timeout("read timed out"), 0.0),
    (api_errors.NotFound("no table"), None),
    (api_errors.Forbidden("denied", errors=[{"reason": "accessDenied"}]), None),
    (api_errors.Forbidden("quota", errors=[{"reason": "quotaExceeded"}]), None),
    (ValueError("bad row"), None),
])
def test_which_errors_are_retried(error, wait):
    assert transient_wait(error) == wait


def test_figures_of_a_running_month_are_estimates():
    assert not month_is_open(MONTH)
    assert month_is_open(Month(2999, 1))


# ---- projects nobody claims ---------------------------------------------------------


def test_unclaimed_project_with_spend_is_warned_about(gcp_source, gcp_tape, caplog):
    with caplog.at_level(logging.WARNING):
        gcp_source().fetch(MONTH)

    warnings = [r.getMessage() for r in caplog.records if "no GCP cluster claims" in r.getMessage()]
    assert len(warnings) == 1
    assert "project 'stray-project-x'" in warnings[0] and "USD 42.17 in 2024-03" in warnings[0]
    spend_query = gcp_tape.queries()[1]["body"]
    projects = {p["name"]: p for p in spend_query["queryParameters"]}["projects"]
    # hub-project-c belongs to the other GCP cluster: claimed, not asked about
    assert [v["value"] for v in projects["parameterValue"]["arrayValues"]] == ["idle-project-y", "stray-project-x"]


@handmade
def test_billing_listing_failure_is_only_a_warning(gcp_source, caplog):
    files = gcp_source().fetch(MONTH)

    assert len(read_rows(files)) == 1
    assert "could not check for projects no cluster claims" in caplog.text
    assert "roles/billing.viewer" in caplog.text


# ---- probe (billing sources check) ----------------------------------------------------


def test_probe_reports_totals_and_what_looks_off(gcp_source, gcp_tape):
    result = gcp_source("gke-beta").check(MONTH)

    assert result.ok, result.detail
    assert result.detail == (f"3 row(s) for 2024-03 from {STANDARD_TABLE}: USD 95.25 (credit -4.75, usage 100.00); "
                             "0 carry the label 'k8s-namespace'; the query scans 12.6 MB")
    assert len(result.warnings) == 2
    assert "GKE cost allocation may be off: turn it on so the export carries k8s-namespace labels" in result.warnings[0]
    assert "project 'stray-project-x'" in result.warnings[1]
    dry_run = gcp_tape.calls[0]["body"]
    assert dry_run["configuration"]["dryRun"] is True


@handmade
def test_probe_fails_cleanly_when_the_table_is_missing(gcp_source):
    result = gcp_source("gke-beta").check(MONTH)

    assert not result.ok
    assert "is the billing export enabled and the table name right?" in result.detail


# ---- snapshots ------------------------------------------------------------------------


def test_second_fetch_reuses_the_snapshot_and_refresh_queries_again(gcp_source, gcp_tape):
    source = gcp_source()
    first = source.fetch(MONTH)
    calls_after_first = len(gcp_tape.calls)

    again = source.fetch(MONTH)
    assert len(gcp_tape.calls) == calls_after_first  # no call at all
    assert again.fingerprint == first.fingerprint

    refreshed = source.fetch(MONTH, refresh=True)
    assert len(gcp_tape.calls) > calls_after_first
    assert refreshed.fingerprint != first.fingerprint  # GCP restated the month
    assert total(read_rows(refreshed)) == Decimal("60.00") and total(read_rows(first)) == Decimal("55.00")


# ---- the recorder itself (no network: its upstream is a stub) --------------------------


class _FakeGoogle(BaseAdapter):
    """Stands in for the real APIs: checks it sees real ids and answers with real ids."""

    def send(self, request, **kwargs):
        assert "real-export-proj" in request.url and b"real-proj-1" in request.body
        body = {"jobReference": {"projectId": "real-export-proj", "jobId": "j1"}, "user_email": "me@real.org",
                "projectBillingInfo": [{"projectId": "real-proj-1"}, {"projectId": "someone-elses-proj"}],
                "table": "real-export-proj:real_ds.gcp_billing_export_v1_0A0A0A_BBBBBB_CCCCCC",
                "account": "billingAccounts/0A0A0A-BBBBBB-CCCCCC"}
        return GcpTape._response(request, 200, {}, json.dumps(body))

    def close(self):
        pass


def test_recorder_writes_scrubbed_responses(tmp_path, monkeypatch):
    monkeypatch.setenv("BILLING_RECORD_TABLE", "real-export-proj.real_ds.gcp_billing_export_v1_0A0A0A_BBBBBB_CCCCCC")
    monkeypatch.setenv("BILLING_RECORD_ACCOUNT", "0A0A0A-BBBBBB-CCCCCC")
    monkeypatch.setenv("BILLING_RECORD_PROJECTS", "real-proj-1=hub-project-a")
    tape = GcpTape(tmp_path, (), Scrubber.from_env())
    tape.upstream = _FakeGoogle()
    session = requests.Session()
    session.mount("https://", tape)

    answer = session.post(f"https://bigquery.googleapis.com{QUERIES_PATH}",
                          json={"query": "SELECT 1", "queryParameters": [{"value": "hub-project-a"}]})

    [written] = tmp_path.glob("*.json")
    assert written.name == "01-queries.json"
    text = written.read_text()
    for secret in ("real-export-proj", "real_ds", "0A0A0A", "real-proj-1", "someone-elses-proj", "me@real.org"):
        assert secret not in text and secret not in answer.text
    record = json.loads(text)
    assert record["request"] == {"method": "POST", "path": QUERIES_PATH}
    assert record["response"]["body"]["projectBillingInfo"] == [{"projectId": "hub-project-a"},
                                                                  {"projectId": "other-project-1"}]
    assert record["response"]["body"]["table"] == f"{EXPORT_PROJECT}:{EXPORT_DATASET}.{STANDARD_TABLE.split('.')[2]}"
    assert record["response"]["body"]["account"] == f"billingAccounts/{ACCOUNT}"
