"""FOCUS corrections (ChargeClass "Correction"): from inline cost rows to their own invoice lines."""
import csv
import datetime as dt
import json
from decimal import Decimal as D

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from pypdf import PdfReader

from billing.attribution import attribute, reconcile
from billing.cli import main
from billing.config import parse_organization
from billing.ingest import ingest_month
from billing.months import Month
from billing.pricing import price_month
from billing.sources import SnapshotStore
from billing.usage import MonthUsage
from helpers import FOCUS_HEADER, focus_row, small_focus_rows, small_org_data, write_focus_csv

JAN = Month(2022, 1)
SHARED, DEDICATED = "111100000000", "222200000000"


def correction(sub, cost, period, **kwargs):
    row = focus_row(sub, cost, **kwargs)
    row[FOCUS_HEADER.index("ChargePeriodStart")] = period
    row[FOCUS_HEADER.index("ChargeClass")] = "Correction"
    return row


def corrected_rows():
    """The small organization's January, plus a December refund for hub alpha, a small December correction of the
    shared cluster's overhead, and a November correction of alpha's dedicated cluster."""
    return small_focus_rows() + [
        correction(SHARED, "-12.34", "2021-12-14T00:00:00Z", tags={"2i2c:hub-name": "alpha"}),
        correction(SHARED, "0.05", "2021-12-01T00:00:00Z", service="Amazon Virtual Private Cloud",
                   service_category="Networking"),
        correction(DEDICATED, "20.004", "2021-11-30T00:00:00Z", tags={"2i2c:hub-name": "prod"}),
    ]


def write_parquet(path, rows):
    """The same rows as a Parquet file with typed columns (timestamps, decimals, null ChargeClass)."""
    columns = {name: [r[i] for r in rows] for i, name in enumerate(FOCUS_HEADER)}
    ts = lambda texts: pa.array([dt.datetime.fromisoformat(t.replace("Z", "+00:00")) for t in texts],  # noqa: E731
                                pa.timestamp("us", "UTC"))
    columns["BillingPeriodStart"] = ts(columns["BillingPeriodStart"])
    columns["ChargePeriodStart"] = ts(columns["ChargePeriodStart"])
    columns["ChargeClass"] = pa.array([c or None for c in columns["ChargeClass"]], pa.string())
    for money in ("BilledCost", "EffectiveCost"):
        columns[money] = pa.array([D(c) for c in columns[money]], pa.decimal128(38, 10))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)


def charges_of(tmp_path, fmt="csv", rows=None):
    rows = corrected_rows() if rows is None else rows
    if fmt == "csv":
        write_focus_csv(tmp_path / "focus" / "2022-01.csv", rows)
    else:
        write_parquet(tmp_path / "focus" / "2022-01.parquet", rows)
    org = parse_organization(small_org_data(f"focus/*.{fmt}"), "o.yaml", tmp_path)
    ingested = ingest_month(org, JAN, SnapshotStore(tmp_path / "snap"))
    attributed = attribute(org, ingested, MonthUsage("m"))
    reconcile(ingested, attributed)
    return price_month(org, JAN, attributed, MonthUsage("m"))


def cloud_lines(charges):
    return [(c.description, c.rounded, dict(c.details).get("corrects")) for c in charges if c.kind == "cloud"]


def test_corrections_are_lines_of_their_own_after_the_months_own_cloud_cost(tmp_path):
    plain = charges_of(tmp_path / "plain", rows=small_focus_rows())
    charges = charges_of(tmp_path / "corrected")
    alpha = cloud_lines(charges["alpha"])
    # The month's own lines are exactly those of the month without corrections...
    assert alpha[:len(cloud_lines(plain["alpha"]))] == cloud_lines(plain["alpha"])
    # ...and the corrections follow, oldest corrected month first, each with the month it corrects.
    assert alpha[len(cloud_lines(plain["alpha"])):] == [
        ("Correction to November 2021 charges: Compute, hub alpha-prod", D("20.00"), "2021-11"),
        ("Correction to December 2021 charges: Compute, hub alpha-shared", D("-12.34"), "2021-12"),
        ("Correction to December 2021 charges: Networking, hub alpha-shared: share of shared cluster shared",
         D("0.03"), "2021-12"),
    ]
    beta = [line for line in cloud_lines(charges["beta"]) if line[2]]
    # 0.05 split evenly is 0.025 each, exactly (attribution keeps exact values); each line rounds half-up.
    assert beta == [("Correction to December 2021 charges: Networking, hub beta-shared: share of shared cluster "
                     "shared", D("0.03"), "2021-12")]
    split = next(c for c in charges["beta"] if dict(c.details).get("corrects"))
    assert dict(split.details)["split"] == "correction to December 2021: split evenly: 50.00% of shared overhead"
    assert [(c.kind, c.hub, c.cluster, c.component) for c in charges["alpha"] if dict(c.details).get("corrects")] == [
        ("cloud", "alpha-prod", "alpha-dedicated", "compute"), ("cloud", "alpha-shared", "shared", "compute"),
        ("cloud", "alpha-shared", "shared", "networking")]


def test_fees_and_uplift_do_not_change_with_corrections(tmp_path):
    plain = charges_of(tmp_path / "plain", rows=small_focus_rows())
    charges = charges_of(tmp_path / "corrected")
    assert [c for c in charges["alpha"] if c.kind != "cloud"] == [c for c in plain["alpha"] if c.kind != "cloud"]


def test_csv_and_parquet_give_the_same_correction_lines(tmp_path):
    from_csv = charges_of(tmp_path / "csv")
    from_parquet = charges_of(tmp_path / "parquet", fmt="parquet")
    assert {k: cloud_lines(v) for k, v in from_csv.items()} == {k: cloud_lines(v) for k, v in from_parquet.items()}
    assert any(line[2] for line in cloud_lines(from_parquet["alpha"]))


def test_a_correction_within_the_billing_month_is_still_a_correction(tmp_path):
    rows = small_focus_rows() + [correction(DEDICATED, "-5.00", "2022-01-10T00:00:00Z", tags={"2i2c:hub-name": "prod"})]
    lines = cloud_lines(charges_of(tmp_path, rows=rows)["alpha"])
    assert lines[-1] == ("Correction to January 2022 charges: Compute, hub alpha-prod", D("-5.00"), "2022-01")


def test_a_month_with_a_correction_invoices_it_and_says_so_in_attribution_csv(tmp_path):
    write_focus_csv(tmp_path / "focus" / "2022-01.csv", corrected_rows())
    org = tmp_path / "org.yaml"
    org.write_text(yaml.safe_dump(small_org_data(), sort_keys=False))
    out = tmp_path / "out"
    assert main(["run", "--org", str(org), "--out", str(out), "--workers", "1", "--month", "2022-01"]) == 0
    with open(out / "2022-01" / "invoices.csv", newline="") as fh:
        alpha = next(r for r in csv.DictReader(fh) if r["bill_to"] == "alpha")
    # 2022.60 without corrections (tests/test_cli_run.py), then +20.00 - 12.34 + 0.03.
    assert alpha["total"] == "2030.29"
    # Compared without whitespace: the PDF wraps long descriptions (at "alpha-" / "shared").
    text = "".join("".join(page.extract_text() for page in PdfReader(out / alpha["pdf"]).pages).split())
    assert "CorrectiontoDecember2021charges:Compute,hubalpha-shared" in text and "-$12.34" in text
    assert "CorrectiontoNovember2021charges:Compute,hubalpha-prod" in text
    with open(out / "2022-01" / "attribution.csv", newline="") as fh:
        attribution = list(csv.DictReader(fh))
    assert list(attribution[0])[-1] == "corrects"
    assert {(r["hub"], r["allocation"], r["cost"]) for r in attribution if r["corrects"] == "2021-12"} == {
        ("alpha-shared", "direct", "-12.34"), ("alpha-shared", "shared", "0.025"), ("beta-shared", "shared", "0.025")}
    assert sum(D(r["cost"]) for r in attribution) == D("582.1800000001") + D("7.714")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_files_without_charge_class_still_price(tmp_path, fmt):
    header = [c for c in FOCUS_HEADER if c not in ("ChargeClass", "ChargePeriodStart")]
    keep = [FOCUS_HEADER.index(c) for c in header]
    rows = [[r[i] for i in keep] for r in small_focus_rows()]
    path = tmp_path / "focus" / f"2022-01.{fmt}"
    path.parent.mkdir(parents=True)
    if fmt == "csv":
        with open(path, "w", newline="") as fh:
            csv.writer(fh).writerows([header] + rows)
    else:
        table = {name: [r[i] for r in rows] for i, name in enumerate(header)}
        table["BillingPeriodStart"] = pa.array(
            [dt.datetime.fromisoformat(t.replace("Z", "+00:00")) for t in table["BillingPeriodStart"]],
            pa.timestamp("us", "UTC"))
        table["BilledCost"] = pa.array([D(c) for c in table["BilledCost"]], pa.decimal128(38, 10))
        table["Tags"] = [json.dumps(json.loads(t)) for t in table["Tags"]]
        pq.write_table(pa.table(table), path)
    org = parse_organization(small_org_data(f"focus/*.{fmt}"), "o.yaml", tmp_path)
    ingested = ingest_month(org, JAN, SnapshotStore(tmp_path / "snap"))
    charges = price_month(org, JAN, attribute(org, ingested, MonthUsage("m")), MonthUsage("m"))
    assert not any(dict(c.details).get("corrects") for cs in charges.values() for c in cs)
    assert sum(c.rounded for c in charges["alpha"]) == D("2022.60")


def test_the_bundled_samples_june_shows_its_corrections_of_may(tmp_path):
    from billing.config import default_organization_path, load_organization
    from billing.usage import load_usage

    org = load_organization(default_organization_path())
    june = Month(2022, 6)
    ingested = ingest_month(org, june, SnapshotStore(tmp_path / "snap"))
    assert ingested.corrected_months == ("2022-05",)
    usage = load_usage(org, june)
    charges = price_month(org, june, attribute(org, ingested, usage), usage)
    corrections = {(community, c.description) for community, cs in charges.items() for c in cs
                   if dict(c.details).get("corrects") == "2022-05"}
    assert ("cvu", "Correction to May 2022 charges: Compute, hub cvu-prod") in corrections
    assert ("volta", "Correction to May 2022 charges: Networking, hub africa-volta: share of shared cluster "
                     "africa") in corrections
    assert ("volta", "Correction to May 2022 charges: Sales tax charged by the cloud provider, hub africa-volta: "
                     "share of shared cluster africa") in corrections
    # sahel-osn joined in June: May's correction is not its to pay.
    assert {community for community, _ in corrections} == {"cvu", "kilimanjaro", "volta", "gl-bioinfo"}
