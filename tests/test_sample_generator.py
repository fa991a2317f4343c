"""The bundled sample: regenerating it gives the committed files, and it has what the pipeline must handle."""
from __future__ import annotations

import csv
import gzip
import io
import json
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from billing.config import load_organization
from billing.sample.generate import FOCUS_COLUMNS, generate
from billing.sources.base import REQUIRED_FOCUS_COLUMNS

SAMPLE = Path(__file__).resolve().parent.parent / "sample"


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("sample")
    return out, generate(out)


@pytest.fixture(scope="module")
def org():
    return load_organization(SAMPLE / "org.yaml")


def _text(path: Path) -> str:
    data = path.read_bytes()
    return (gzip.decompress(data) if path.name.endswith(".gz") else data).decode("utf-8")


def _cost_files() -> list[Path]:
    return sorted((SAMPLE / "data" / "focus").glob("*/*.*"))


def _rows(path: Path) -> tuple[list[str], list[dict]]:
    """Column names and rows of a cost file; every value as text (None for empty/null)."""
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        rows = [{k: (None if v is None else str(v)) for k, v in r.items()} for r in table.to_pylist()]
        return table.column_names, rows
    reader = csv.DictReader(io.StringIO(_text(path)))
    rows = [{k: (v if v != "" else None) for k, v in r.items()} for r in reader]
    return list(reader.fieldnames or []), rows


@pytest.fixture(scope="module")
def cost_rows() -> dict[Path, list[dict]]:
    return {p: _rows(p)[1] for p in _cost_files()}


def test_regenerating_gives_the_committed_sample(regenerated):
    out, written = regenerated
    assert {p.as_posix() for p in written} >= {"org.yaml", "data/usage/daily-usage-2022.csv", "data/usage/mau.csv"}
    assert len([p for p in written if p.parts[:2] == ("data", "focus")]) == 36   # 3 providers x 12 months
    for rel in written:
        fresh, committed = out / rel, SAMPLE / rel
        assert committed.exists(), f"sample/{rel} is not committed; run python -m billing.sample.generate sample"
        if rel.suffix == ".parquet":
            a, b = pq.read_table(fresh), pq.read_table(committed)
            assert a.schema.equals(b.schema) and a.equals(b), f"sample/{rel} differs from a fresh generation"
        else:   # text files and gzip (written with mtime 0) are the same bytes on every run
            assert _text(fresh) == _text(committed), f"sample/{rel} differs from a fresh generation"
            assert fresh.read_bytes() == committed.read_bytes(), f"sample/{rel}: same content, other bytes"


def test_configuration_shape(org):
    assert len(org.hubs) == 43 and len(org.clusters) == 17
    assert {c.provider for c in org.clusters} == {"gcp", "aws", "azure"}
    shared = [c for c in org.clusters if c.tenancy == "shared"]
    assert len(shared) >= 2 and all(len(org.hubs_of_cluster(c.id)) >= 2 for c in shared)
    assert {c.split.rule for c in shared} == {"usage", "even", "direct_cost"}
    assert all(c.community for c in org.clusters if c.tenancy == "dedicated")
    assert any(h.sub_account for h in org.hubs)
    grant = [c for c in org.communities if c.funder]
    assert grant and all(c.pricing_plan == "alpha-2022-grant" for c in grant)
    assert any("&" in c.name for c in org.communities)
    assert org.ledger_url is None
    models = {ch.model for p in org.pricing_plans for ch in p.charges}
    assert models >= {"cloud_passthrough", "tier_fee", "dedicated_uplift", "graduated_usage", "fixed_fee", "subsidy"}


def test_cost_files_are_focus(org):
    files = _cost_files()
    assert {p.parent.name for p in files} == {"gcp", "aws", "azure"}
    assert {p.name.split(".", 1)[1] for p in files} == {"parquet", "csv.gz", "csv"}
    for path in files:
        columns, rows = _rows(path)
        assert set(columns) >= set(REQUIRED_FOCUS_COLUMNS) | set(FOCUS_COLUMNS), path
        assert rows, path
        for row in rows:
            assert row["BilledCost"] is not None, path
            Decimal(row["BilledCost"])   # a decimal number
            assert row["BillingCurrency"] == "USD"
            assert row["ChargeCategory"] in ("Usage", "Purchase", "Tax", "Credit", "Adjustment")
            assert isinstance(json.loads(row["Tags"]), dict)
        if path.suffix == ".parquet":   # never float money in Parquet
            schema = pq.read_schema(path)
            for name in ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost"):
                assert schema.field(name).type == pa.decimal128(38, 10)
            assert schema.field("BillingPeriodStart").type == pa.timestamp("us", tz="UTC")


def test_cost_files_contain_the_edge_cases(org, cost_rows):
    rows = [r for rs in cost_rows.values() for r in rs]
    assert any(r["ChargeCategory"] == "Tax" and Decimal(r["BilledCost"]) > 0 for r in rows)
    assert any(r["ChargeCategory"] == "Credit" and Decimal(r["BilledCost"]) < 0 for r in rows)
    assert any(r["ChargeClass"] == "Correction" for r in rows)

    provider_of = {"Google Cloud": "gcp", "AWS": "aws", "Microsoft": "azure"}
    clusters = {(c.provider, s): c for c in org.clusters for s in c.sub_accounts}
    # June's exports correct May: a refund of one hub's compute on a dedicated cluster, and an untagged charge of a
    # shared cluster with its tax (split among the hubs active in May).
    corrections = [r for r in rows if r["ChargeClass"] == "Correction"]
    assert {(r["BillingPeriodStart"][:7], r["ChargePeriodStart"][:7]) for r in corrections} == {("2022-06", "2022-05")}
    tenancy = {id(r): clusters[(provider_of[r["ProviderName"]], r["SubAccountId"])].tenancy for r in corrections}
    assert any(Decimal(r["BilledCost"]) < 0 and tenancy[id(r)] == "dedicated" for r in corrections)
    shared = [r for r in corrections if tenancy[id(r)] == "shared"]
    assert shared and all(Decimal(r["BilledCost"]) > 0 and json.loads(r["Tags"]) == {} for r in shared)
    assert {r["ChargeCategory"] for r in shared} == {"Usage", "Tax"}
    unclaimed, unknown_hub = set(), set()
    for r in rows:
        cluster = clusters.get((provider_of[r["ProviderName"]], r["SubAccountId"]))
        if cluster is None:
            unclaimed.add(r["SubAccountId"])
            continue
        tag = json.loads(r["Tags"]).get(cluster.hub_tag)
        known = {h.match_value for h in org.hubs_of_cluster(cluster.id) if h.sub_account is None}
        if cluster.tenancy == "shared" and tag is not None and tag not in known:
            unknown_hub.add((cluster.id, tag))
    assert unclaimed == {"ohc-sandbox"}
    assert unknown_hub == {("africa", "ghost-workshop")}


def test_usage_files_cover_the_hubs(org):
    shared = {c.id for c in org.clusters if c.tenancy == "shared"}
    with open(SAMPLE / "data" / "usage" / "daily-usage-2022.csv", newline="") as fh:
        daily = list(csv.DictReader(fh))
    assert list(daily[0]) == ["date", "cluster", "hub", "value"]
    hubs = {h.id: h for h in org.hubs}
    assert {r["hub"] for r in daily} == {h.id for h in org.hubs if h.cluster in shared}
    assert all(hubs[r["hub"]].cluster == r["cluster"] and Decimal(r["value"]) >= 0 for r in daily)
    assert len({r["date"] for r in daily}) == 365
    with open(SAMPLE / "data" / "usage" / "mau.csv", newline="") as fh:
        mau = list(csv.DictReader(fh))
    assert list(mau[0]) == ["month", "hub", "mau", "staff"]
    assert {r["hub"] for r in mau} == set(hubs)
    assert {r["month"] for r in mau} == {f"2022-{m:02d}" for m in range(1, 13)}
    assert max(int(r["mau"]) for r in mau) <= 2000
    assert all(0 <= int(r["staff"]) <= int(r["mau"]) for r in mau)
    assert any(0 < int(r["staff"]) < int(r["mau"]) for r in mau)
    # a staging hub's users are all staff, and its users are not billed anyway
    staging = [r for r in mau if hubs[r["hub"]].tag_value == "staging"]
    assert staging and all(r["staff"] == r["mau"] for r in staging)
    assert all(not hubs[r["hub"]].billable_users for r in staging)


def test_contracts_as_they_really_are(org):
    """The sample shows what real contracts and grants do (see billing/sample/generate.py's docstring)."""
    from billing.months import Month

    plans = {p.id: p for p in org.pricing_plans}
    # a plan change in July: from the fee by kind to membership plus a fee per monthly active user
    npu = org.community("npu")
    assert npu.plan_for("2022-06") == "alpha-2022" and npu.plan_for("2022-07") == "usage-2026-pilot"
    assert "graduated_usage" in {ch.model for ch in plans["usage-2026-pilot"].charges}
    # a contract that starts on a day: 18 of April's 30 days
    hydro = org.community("hydro")
    assert hydro.active_from == "2022-04-13" and org.active_days(hydro, Month(2022, 4)) == (18, 30)
    assert [(o.party, o.month) for o in org.one_offs] == [("community:hydro", "2022-04")]
    # a membership billed once a year
    annual = [ch.params for p in org.pricing_plans for ch in p.charges if ch.params.get("every") == "year"]
    assert annual == [{"amount": "15000.00", "every": "year", "billing_month": 7,
                       "description": "Membership (general), {amount} a year, billed each July"}]
    # the grant's 2022 award starts in April, after a pilot award for the first quarter
    (funder,) = org.funders
    assert [(a.id, a.start, a.until) for a in funder.awards] == [("gc-pilot", "2022-01", "2022-03"),
                                                                  ("gc-2022", "2022-04", "2023-03")]
    assert funder.award_for("2022-03").id == "gc-pilot" and funder.award_for("2022-11").id == "gc-2022"
    # the capped plan: a fee below the cap, which applies to fees (and markup) only
    custom = {ch.model: ch.params for ch in plans["partner-custom"].charges}
    assert Decimal(custom["fixed_fee"]["amount"]) < Decimal(custom["cap"]["amount"])
    assert custom["cap"]["applies_to"] == "fees" and "tier_fee" not in custom
    # a prepaid balance, and staging hubs whose users are not billed
    assert [p.id for c in org.communities for p in c.prepaid] == ["bio-obs-2022"]
    assert {h.id for h in org.hubs if not h.billable_users} == {h.id for h in org.hubs if h.tag_value == "staging"}


@pytest.fixture(scope="module")
def priced_year(org, tmp_path_factory):
    """The sample's 2022 priced month by month (no ledger, no PDF), what each month used up carried to the next
    (the sample has no yearly minimum, so the year's charges need not be carried)."""
    from billing.attribution import attribute
    from billing.ingest import ingest_month
    from billing.months import Month
    from billing.pricing import price_month
    from billing.sources import SnapshotStore
    from billing.usage import load_usage
    from pricing_models.base import PricingState

    state, year = PricingState(), {}
    snapshots = SnapshotStore(tmp_path_factory.mktemp("snap"))
    for m in range(1, 13):
        month = Month(2022, m)
        usage = load_usage(org, month)
        # price_month records what each month draws from awards and prepaid balances into `state`
        year[str(month)] = price_month(org, month, attribute(org, ingest_month(org, month, snapshots), usage), usage,
                                       state)
    return year


def _lines(charges, kind=None):
    return [(c.description, c.rounded) for c in charges if kind is None or c.kind == kind]


def test_the_sample_year_shows_each_contract(priced_year):
    # hydro starts on 13 April: its fees are prorated, and it pays a setup fee (a one-off, not a pricing model)
    assert ("Monthly service fee (Research tier): 18 of 30 days of $1,500.00", Decimal("900.00")) in \
        _lines(priced_year["2022-04"]["hydro"], "fee")
    # npu changes plan in July: membership plus a fee on its billable users (not staging, not staff)
    assert [d for d, _ in _lines(priced_year["2022-06"]["npu"], "fee")] == ["Monthly service fee (Education tier)"]
    assert ("Membership (general), $15,000 per year", Decimal("1250.00")) in _lines(priced_year["2022-07"]["npu"])
    # genomics-alliance's membership is billed in July only
    yearly = {m: [a for d, a in _lines(cs["genomics-alliance"], "fee") if d.startswith("Membership")]
              for m, cs in priced_year.items()}
    assert {m: v for m, v in yearly.items() if v} == {"2022-07": [Decimal("15000.00")]}
    # the cap on fees never credits more than the markup, and credits some of it in the busy months
    caps = [(dict(_lines(cs["polar-lab"], "markup")), -sum(a for _, a in _lines(cs["polar-lab"], "cap")))
            for cs in priced_year.values()]
    assert all(credit <= sum(markup.values()) for markup, credit in caps) and any(credit > 0 for _, credit in caps)
    # bio-obs's prepaid balance runs out in August
    drawn = {m: -sum(a for _, a in _lines(cs["bio-obs"], "prepaid")) for m, cs in priced_year.items()}
    assert sum(drawn.values()) == Decimal("20000.00") and drawn["2022-08"] > 0 and drawn["2022-09"] == 0


def test_the_sample_grant_award_runs_out_in_november(org, priced_year):
    def funded(month):
        return {c: sum(ch.rounded for ch in cs if ch.kind == "subsidy" and ch.bill_to) for c, cs in
                priced_year[month].items() if any(ch.kind == "subsidy" and ch.bill_to for ch in cs)}

    grant = {c.id for c in org.communities if c.funder}
    april_on = sum(sum(funded(f"2022-{m:02d}").values()) for m in range(4, 13))
    assert april_on == Decimal("115000.00")                  # the 2022 award, to the cent, and never more
    assert set(funded("2022-10")) == {c for c in grant if org.is_active(org.community(c), "2022-10")}
    november = funded("2022-11")
    assert 0 < len(november) < len(grant)                   # some communities are paid for, the rest pay
    partly = [c for c, cs in priced_year["2022-11"].items() if any("now used up" in ch.description for ch in cs)]
    assert partly == ["ups"] and sum(ch.rounded for ch in priced_year["2022-11"]["ups"]) > 0
    assert funded("2022-12") == {}                           # used up: December is the communities' own
