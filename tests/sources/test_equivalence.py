"""The live connectors are interchangeable with FOCUS files.

One organization with one cluster per cloud (GCP shared, split by direct
cost; AWS shared, split by usage; Azure dedicated), invoiced for 2022-03
twice:

- from the live sources (`gcp_bigquery`, `aws_cost_explorer`,
  `azure_cost_management`), each answered through its real SDK from hand-made
  recordings in tests/data/equivalence/<cloud>/fetch/ (same formats and replay
  machinery as the connectors' own tests: GcpTape, botocore's Stubber,
  the Azure ReplayTransport);
- from FOCUS files holding the same spend (tests/data/equivalence/focus/),
  written at a finer grain (per day or resource, an extra tag, a February row)
  so that the sums, not the row shapes, have to agree.

Both runs must produce the same invoices (parties, numbers, every line, totals),
the same reconciliation and the same attribution. The live run keeps snapshots
and a rerun reuses them without calling any cloud. `billing sources check` says
ok (rows, amount) for each live source, and FAIL with what to fix when GCP's
table is missing, AWS denies ce:GetCostAndUsage and Azure answers 403.

AWS is also read through Athena (`aws_athena`, one aggregate query over the
FOCUS table, tests/data/equivalence/aws/athena_fetch/): its cost groups,
attribution and invoices must equal those of the FOCUS files.

The recordings are hand-made (nothing to re-record), so the module is skipped
under BILLING_RECORD=1.

Reaching the sources `make_source` builds (ingest and `sources check` create
their own instances): BigQueryExport.make_clients and aws.common.make_client are
replaced as in the connectors' tests; CostManagementQuery takes its transport
and credential as dataclass fields, so its (inherited) __post_init__ is wrapped
at class level to set them, and every source's retry sleep fails the test.
"""
from __future__ import annotations

import csv
import dataclasses
import os
import socket
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

import sources.test_aws as aws_tests
from billing import ledger as ledger_mod
from billing.cli import main
from billing.config import parse_organization
from billing.months import Month
from billing.pipeline import RunOptions, attribute_costs, fetch_costs, run_month
from billing.sources.aws import common as aws_common
from billing.sources.aws.athena import AthenaQuery
from billing.sources.aws.cost_explorer import CostExplorer
from billing.sources.azure import CostManagementQuery
from billing.sources.gcp import BigQueryExport
from billing.usage import load_usage
from sources.test_aws import aws_env, replay_client  # noqa: F401  (aws_env: autouse fake AWS credentials)
from sources.test_azure import FakeCredential, ReplayTransport
from sources.test_gcp import GcpTape

pytestmark = pytest.mark.skipif(os.environ.get("BILLING_RECORD") == "1",
                                reason="hand-made recordings: nothing to re-record")

DATA = Path(__file__).resolve().parent.parent / "data" / "equivalence"
MONTH = Month(2022, 3)

GCP_ACCOUNT = "0A0A0A-BBBBBB-CCCCCC"
GCP_PROJECTS = ["hub-project-a", "hub-project-b"]
GCP_TABLE = "billing-admin-proj.billing_export.gcp_billing_export_resource_v1_0A0A0A_BBBBBB_CCCCCC"
GCP_LABEL = "k8s-namespace"
AWS_PAYER, AWS_ACCOUNT = "999999999999", "111111111111"
AZURE_ACCOUNT = "8f3c2a71-5d4e-4b9a-a6c1-2e7d9b0f4a35:1c6e8d02-7b3f-4e95-8a41-d2c7f9e0b8a6_2019-05-31"
AZURE_SUBSCRIPTION = "5a1b2c3d-0000-4000-8000-00000000a001"
AZURE_SCOPE = f"/subscriptions/{AZURE_SUBSCRIPTION}"

LIVE_SOURCES = {
    "gke-shared": {"type": "gcp_bigquery", "table": GCP_TABLE, "location": "US"},
    "eks-shared": {"type": "aws_cost_explorer"},
    "aks-west": {"type": "azure_cost_management", "scope": AZURE_SCOPE},
}
FOCUS_SOURCES = {
    "gke-shared": {"type": "focus", "path": str(DATA / "focus" / "gcp" / "*.csv")},
    "eks-shared": {"type": "focus", "path": str(DATA / "focus" / "aws" / "*.csv")},
    "aks-west": {"type": "focus", "path": str(DATA / "focus" / "azure" / "*.csv")},
}


def org_data(sources: dict[str, dict]) -> dict:
    """Three communities on three clouds; only the clusters' `source` differs between the two runs."""
    contact = {"name": "Accounts Payable", "email": "ap@example.edu", "address": ["1 College Rd", "Springfield"]}
    fees = {"model": "tier_fee", "fees": {"education": "1000.00", "research": "1500.00", "partnership": "4166.67"}}
    return {
        "name": "Equivalence Org",
        "issuer": {"name": "Hubs Cooperative", "address": ["2 Side St"], "email": "ar@example.org",
                   "invoice_prefix": "EQ", "payment_terms_days": 30},
        "funders": [{"id": "nsf", "name": "National Science Foundation", "grant": "NSF-2022-001",
                     "billing_contact": contact}],
        "communities": [
            {"id": "north", "name": "North College", "kind": "education", "pricing_plan": "edu-2022",
             "billing_contact": contact},
            {"id": "east", "name": "East Research Lab", "kind": "research", "pricing_plan": "grant-2022",
             "billing_contact": contact, "funder": "nsf"},
            {"id": "west", "name": "West Partnership", "kind": "partnership", "pricing_plan": "partner-2022",
             "billing_contact": contact},
        ],
        "clusters": [
            {"id": "gke-shared", "provider": "gcp", "billing_account": GCP_ACCOUNT, "sub_accounts": GCP_PROJECTS,
             "tenancy": "shared", "hub_tag": GCP_LABEL, "split": {"rule": "direct_cost"},
             "source": sources["gke-shared"]},
            {"id": "eks-shared", "provider": "aws", "billing_account": AWS_PAYER, "sub_accounts": [AWS_ACCOUNT],
             "tenancy": "shared", "hub_tag": "2i2c:hub-name", "split": {"rule": "usage"},
             "source": sources["eks-shared"]},
            {"id": "aks-west", "provider": "azure", "billing_account": AZURE_ACCOUNT,
             "sub_accounts": [AZURE_SUBSCRIPTION], "tenancy": "dedicated", "community": "west", "hub_tag": "hub",
             "source": sources["aks-west"]},
        ],
        "hubs": [
            {"id": "north-gke", "cluster": "gke-shared", "community": "north", "tag_value": "north"},
            {"id": "east-gke", "cluster": "gke-shared", "community": "east", "tag_value": "east"},
            {"id": "north-eks", "cluster": "eks-shared", "community": "north", "tag_value": "north-staging"},
            {"id": "west-eks", "cluster": "eks-shared", "community": "west", "tag_value": "west"},
            {"id": "west-prod", "cluster": "aks-west", "community": "west", "tag_value": "prod"},
            {"id": "west-staging", "cluster": "aks-west", "community": "west", "tag_value": "staging"},
        ],
        "pricing_plans": [
            {"id": "edu-2022", "name": "Education 2022", "charges": [fees, {"model": "cloud_passthrough"}]},
            {"id": "grant-2022", "name": "Grant-funded 2022", "charges": [
                fees, {"model": "cloud_passthrough"}, {"model": "subsidy", "share": "50", "applies_to": "all"}]},
            {"id": "partner-2022", "name": "Partnership 2022", "charges": [
                fees, {"model": "dedicated_uplift", "percent": "25"}, {"model": "cloud_passthrough"}]},
        ],
        "usage": {"daily": str(DATA / "usage" / "daily.csv")},
    }


def organization(sources: dict[str, dict], tmp_path: Path):
    return parse_organization(org_data(sources), "equivalence-org.yaml", tmp_path)


# ---- the three clouds, replayed -----------------------------------------------------------


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Nothing here may open a connection: every answer comes from a recording."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access in an offline test: {args[1:] if len(args) > 1 else args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _no_retry(seconds: float) -> None:
    pytest.fail(f"unexpected retry (asked to wait {seconds} s): the recordings hold no transient error")


class Replays:
    """Makes every GCP, AWS and Azure source that make_source builds answer from DATA/<cloud>/<scenario>/."""

    LIVE_CLASSES = (BigQueryExport, CostExplorer, AthenaQuery, CostManagementQuery)

    def __init__(self, monkeypatch):
        self.monkeypatch = monkeypatch
        self.azure_seams: dict = {}
        self.gcp = self.azure = None
        monkeypatch.setattr(aws_tests, "DATA", DATA / "aws")  # replay_client reads DATA/<name>/
        for cls in self.LIVE_CLASSES:
            self._on_creation(cls)

    def _on_creation(self, cls) -> None:
        original = cls.__post_init__
        seams = self.azure_seams if cls is CostManagementQuery else {}

        def post_init(source):
            original(source)
            source.sleep = _no_retry
            if isinstance(source, AthenaQuery):
                source.poll_sleep = _no_retry     # the recordings answer SUCCEEDED at the first poll
            for name, value in seams.items():
                setattr(source, name, value)

        self.monkeypatch.setattr(cls, "__post_init__", post_init)

    def use(self, *, gcp: str, aws_ce: str, azure: str) -> "Replays":
        month_literals = (f"{MONTH.year}{MONTH.month:02d}", str(MONTH))
        self.gcp = GcpTape(DATA / "gcp" / gcp, month_literals + tuple(GCP_PROJECTS) + (GCP_LABEL, GCP_ACCOUNT))
        self.monkeypatch.setattr(BigQueryExport, "make_clients", lambda source, project: self.gcp.clients(project))
        client, self.aws_stubber = replay_client("ce", aws_ce)
        self.monkeypatch.setattr(aws_common, "make_client", lambda service, region: client)
        self.azure = ReplayTransport(DATA / "azure" / azure)
        self.azure_seams.update(transport=self.azure, credential_factory=FakeCredential)
        return self

    def use_athena(self, scenario: str) -> "Replays":
        """Only the AWS client, answering as Athena from DATA/aws/<scenario>/."""
        client, self.aws_stubber = replay_client("athena", scenario)
        self.monkeypatch.setattr(aws_common, "make_client", lambda service, region: client)
        return self

    def assert_used_up(self) -> None:
        """Every recorded call was made, in order (of the clouds in use)."""
        if self.gcp is not None:
            self.gcp.assert_used_up()
        self.aws_stubber.assert_no_pending_responses()
        if self.azure is not None:
            assert len(self.azure.requests) == len(self.azure.files), "Azure recordings never asked for"

    def forbid_calls(self) -> None:
        """From now on, creating any cloud client fails the test."""

        def refuse(*args, **kwargs):
            raise AssertionError("a cloud API was called although its snapshot exists")

        self.monkeypatch.setattr(BigQueryExport, "make_clients", refuse)
        self.monkeypatch.setattr(aws_common, "make_client", refuse)
        self.azure_seams.update(transport=None, credential_factory=refuse)


@pytest.fixture
def replays(monkeypatch) -> Replays:
    return Replays(monkeypatch)


# ---- comparing two runs ---------------------------------------------------------------------


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def ledger_invoices(out: Path) -> list:
    engine = ledger_mod.open_ledger(f"sqlite:///{out / 'ledger.db'}")
    try:
        return ledger_mod.month_invoices(engine, str(MONTH))
    finally:
        engine.dispose()


def without_fingerprint(invoices) -> list:
    return [dataclasses.replace(inv, data_fingerprint="") for inv in invoices]


def line_view(invoices) -> list[tuple]:
    return [(inv.number, inv.party_kind, inv.party_id, line.section, line.description, line.hub, line.cluster,
             line.component, line.amount)
            for inv in invoices for line in inv.lines]


def snapshot_files(out: Path) -> list[Path]:
    return sorted((out / "snapshots").glob("*/*/*"))


# ---- the equivalence ----------------------------------------------------------------------------


def test_live_sources_and_focus_files_give_the_same_invoices(tmp_path, replays):
    live_out, focus_out = tmp_path / "live", tmp_path / "focus"
    live_org, focus_org = organization(LIVE_SOURCES, tmp_path), organization(FOCUS_SOURCES, tmp_path)

    replays.use(gcp="fetch", aws_ce="fetch", azure="fetch")
    live = run_month(live_org, MONTH, RunOptions(out_dir=live_out, workers=1, issue_on_closing_day=True))
    replays.assert_used_up()
    focus = run_month(focus_org, MONTH, RunOptions(out_dir=focus_out, workers=1, issue_on_closing_day=True))

    # The data went where it was meant to: 3 clouds, one unknown AWS hub tag left unattributed.
    assert [(r.provider, r.billing_account, r.input_total, r.unattributed) for r in live.reconciliation] == [
        ("aws", AWS_PAYER, Decimal("705.5000000001"), Decimal("3.33")),
        ("azure", AZURE_ACCOUNT, Decimal("773.215"), Decimal(0)),
        ("gcp", GCP_ACCOUNT, Decimal("1275.672001"), Decimal(0)),
    ]
    assert [(i.number, i.party_kind, i.party_id, i.total) for i in live.invoices] == EXPECTED_INVOICES

    # Same result of the run, the same ledger, the same files.
    assert focus.reconciliation == live.reconciliation
    assert focus.unattributed == live.unattributed == Decimal("3.33")
    assert focus.created == live.created == [number for number, *_ in EXPECTED_INVOICES]
    assert focus.warnings == live.warnings
    live_invoices, focus_invoices = ledger_invoices(live_out), ledger_invoices(focus_out)
    assert line_view(focus_invoices) == line_view(live_invoices)        # readable diff first ...
    assert without_fingerprint(focus_invoices) == without_fingerprint(live_invoices)   # ... then every field
    assert [i.total for i in focus_invoices] == [i.total for i in live_invoices]
    for name in ("attribution.csv", "reconciliation.csv"):
        assert read_csv(focus_out / "2022-03" / name) == read_csv(live_out / "2022-03" / name), name
    drop = lambda rows: [{k: v for k, v in r.items() if k != "data_fingerprint"} for r in rows]  # noqa: E731
    assert drop(read_csv(focus_out / "2022-03" / "invoices.csv")) == drop(read_csv(live_out / "2022-03" / "invoices.csv"))

    # The live run kept one snapshot per cluster; the FOCUS run needed none.
    snapshots = snapshot_files(live_out)
    assert sorted({p.parent.parent.name for p in snapshots}) == [
        "aws_cost_explorer-eks-shared", "azure_cost_management-aks-west", "gcp_bigquery-gke-shared"]
    assert sorted(p.name.rsplit(".", 1)[-1] for p in snapshots) == ["json", "json", "json",
                                                                    "parquet", "parquet", "parquet"]
    assert snapshot_files(focus_out) == []

    # A rerun reads the snapshots: no cloud is asked, no invoice is created, nothing changes.
    replays.forbid_calls()
    again = run_month(live_org, MONTH, RunOptions(out_dir=live_out, workers=1, issue_on_closing_day=True))
    assert again.created == [] and again.unchanged == live.created
    assert ledger_invoices(live_out) == live_invoices
    assert snapshot_files(live_out) == snapshots


# Checked by hand: north 1000.00 fee + GCP 812.40 - 40.62 + 45.13 + shares of gke-shared overhead (70.32% by direct
# cost) + AWS 210.50 + shares of eks-shared overhead (65.29% by usage, 150.5 of 230.5); east's 1878.61 of charges
# is half paid by the funder (939.305: -939.31 on east's invoice, +939.31 on the funder's); west 4166.67 + 25%
# uplift 1041.67 + its AKS cluster (direct, overhead, tax, refund) + its EKS hub and 34.71% of eks-shared overhead.
EXPECTED_INVOICES = [
    ("EQ-2022-0001", "community", "north", Decimal("2167.24")),
    ("EQ-2022-0002", "community", "east", Decimal("939.30")),
    ("EQ-2022-0003", "community", "west", Decimal("6413.55")),
    ("EQ-2022-0004", "funder", "nsf", Decimal("939.31")),
]


def attribution(org, out: Path) -> list:
    """The month's attributed costs, sorted (fetch, usage and attribution only: no ledger, no PDF)."""
    ingested = fetch_costs(org, MONTH, RunOptions(out_dir=out), False)
    attributed, _ = attribute_costs(org, ingested, load_usage(org, MONTH))
    return sorted(attributed, key=repr)


def test_aws_focus_file_with_user_prefixed_tags_matches_cost_explorer(tmp_path, replays):
    """AWS Data Exports write user-defined tag keys as 'user:<key>'; ingest accepts that spelling too."""
    replays.use(gcp="fetch", aws_ce="fetch", azure="fetch")
    live = attribution(organization(LIVE_SOURCES, tmp_path), tmp_path / "live")

    as_aws_exports_it = tmp_path / "focus-aws" / "2022-03.csv"
    as_aws_exports_it.parent.mkdir()
    text = (DATA / "focus" / "aws" / "2022-03.csv").read_text()
    as_aws_exports_it.write_text(text.replace('""2i2c:', '""user:2i2c:'))
    sources = dict(FOCUS_SOURCES, **{"eks-shared": {"type": "focus", "path": str(as_aws_exports_it)}})
    assert attribution(organization(sources, tmp_path), tmp_path / "focus") == live


# ---- AWS through Athena -------------------------------------------------------------------------

ATHENA = {"type": "aws_athena", "database": "billing", "table": "focus",
          "output_location": "s3://athena-results/billing/"}
ATHENA_SOURCES = dict(FOCUS_SOURCES, **{"eks-shared": ATHENA})


def cost_groups(org, out: Path) -> list:
    """The month's cost groups as ingest sees them (how many source rows made each one aside)."""
    ingested = fetch_costs(org, MONTH, RunOptions(out_dir=out), False)
    return sorted((dataclasses.replace(g, rows=0) for g in ingested.groups), key=repr)


def test_athena_and_focus_files_give_the_same_cost_groups_and_invoices(tmp_path, replays):
    """eks-shared summed by one Athena query over the FOCUS table, against the same spend as FOCUS files."""
    athena_out, focus_out = tmp_path / "athena", tmp_path / "focus"
    athena_org, focus_org = organization(ATHENA_SOURCES, tmp_path), organization(FOCUS_SOURCES, tmp_path)

    replays.use_athena("athena_fetch")
    athena_run = run_month(athena_org, MONTH, RunOptions(out_dir=athena_out, workers=1, issue_on_closing_day=True))
    replays.assert_used_up()
    replays.forbid_calls()                      # from here on, the snapshot answers
    focus_run = run_month(focus_org, MONTH, RunOptions(out_dir=focus_out, workers=1, issue_on_closing_day=True))

    assert cost_groups(athena_org, athena_out) == cost_groups(focus_org, focus_out)
    assert athena_run.reconciliation == focus_run.reconciliation
    assert [(i.number, i.party_kind, i.party_id, i.total) for i in athena_run.invoices] == EXPECTED_INVOICES
    athena_invoices, focus_invoices = ledger_invoices(athena_out), ledger_invoices(focus_out)
    assert line_view(athena_invoices) == line_view(focus_invoices)
    assert without_fingerprint(athena_invoices) == without_fingerprint(focus_invoices)
    for name in ("attribution.csv", "reconciliation.csv"):
        assert read_csv(athena_out / "2022-03" / name) == read_csv(focus_out / "2022-03" / name), name
    assert [p.parent.parent.name for p in snapshot_files(athena_out) if p.suffix == ".parquet"] == [
        "aws_athena-eks-shared"]


def test_sources_check_reads_the_athena_table(tmp_path, replays, capsys):
    replays.use_athena("athena_probe")
    code = main(["sources", "check", "--org", str(write_org(tmp_path, ATHENA_SOURCES)), "--month", "2022-03",
                 "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    replays.assert_used_up()

    assert code == 0, out
    line = checked_lines(out)["eks-shared"]
    assert line.split()[:3] == ["ok", "eks-shared", "aws_athena"]
    assert ("Athena billing.focus (FOCUS) 2022-03: 11 line item(s), 705.5000000001 USD in account(s) 111111111111; "
            "6 carry tag '2i2c:hub-name'; 3.1 MB scanned") in line
    assert "warning" not in out


# ---- billing sources check ------------------------------------------------------------------


def write_org(tmp_path: Path, sources: dict[str, dict]) -> Path:
    path = tmp_path / "org.yaml"
    path.write_text(yaml.safe_dump(org_data(sources), sort_keys=False))
    return path


def check(tmp_path: Path) -> int:
    code = main(["sources", "check", "--org", str(write_org(tmp_path, LIVE_SOURCES)), "--month", "2022-03",
                 "--out", str(tmp_path / "out")])
    return code


def checked_lines(out: str) -> dict[str, str]:
    """cluster id -> its status line."""
    return {line.split()[1]: line for line in out.splitlines() if line.startswith(("ok ", "FAIL "))}


def test_sources_check_reads_each_live_source(tmp_path, replays, capsys):
    replays.use(gcp="probe", aws_ce="probe", azure="probe")
    code = check(tmp_path)
    out = capsys.readouterr().out
    replays.assert_used_up()

    assert code == 0, out
    lines = checked_lines(out)
    assert sorted(lines) == ["aks-west", "eks-shared", "gke-shared"]
    assert all(line.startswith("ok ") for line in lines.values()), out
    assert lines["gke-shared"].split()[2] == "gcp_bigquery"
    assert (f"9 row(s) for 2022-03 from {GCP_TABLE}: USD 1275.672001 (credit -52.620000, tax 17.150000, "
            f"usage 1311.142001); 6 carry the label '{GCP_LABEL}'; the query scans 4.2 MB") in lines["gke-shared"]
    assert lines["eks-shared"].split()[2] == "aws_cost_explorer"
    assert ("Cost Explorer 2022-03: 4 group(s), 705.5000000001 USD in account(s) 111111111111; "
            "3 value(s) of tag '2i2c:hub-name'") in lines["eks-shared"]
    assert lines["aks-west"].split()[2] == "azure_cost_management"
    assert (f"Cost Management 2022-03 at {AZURE_SCOPE}: 8 row(s), 773.22 USD in subscription(s) "
            f"{AZURE_SUBSCRIPTION}; 2 value(s) of tag 'hub'") in lines["aks-west"]
    assert "warning" not in out
    assert "3 of 3 source(s) can read 2022-03" in out
    assert not (tmp_path / "out" / "snapshots").exists()   # a check fetches nothing to keep


def test_sources_check_says_what_to_fix(tmp_path, replays, capsys):
    replays.use(gcp="probe_table_missing", aws_ce="probe_access_denied", azure="probe_forbidden")
    code = check(tmp_path)
    out = capsys.readouterr().out
    replays.assert_used_up()

    assert code == 1, out
    lines = checked_lines(out)
    assert all(line.startswith("FAIL ") for line in lines.values()) and len(lines) == 3, out
    assert f"table {GCP_TABLE} not found" in lines["gke-shared"]
    assert "is the billing export enabled and the table name right?" in lines["gke-shared"]
    assert "Cost Explorer denied access: the credentials need ce:GetCostAndUsage" in lines["eks-shared"]
    assert "123456789012" not in out                       # the account in AWS's message is masked
    assert "HTTP 403: AuthorizationFailed" in lines["aks-west"]
    assert f"the Cost Management Reader role on {AZURE_SCOPE}" in lines["aks-west"]
    assert "0 of 3 source(s) can read 2022-03" in out
