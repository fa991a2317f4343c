import gzip
import shutil
from decimal import Decimal as D

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from billing.errors import InputError
from billing.ingest import ingest_month
from billing.months import Month
from billing.sources import SnapshotStore
from billing.config import parse_organization
from helpers import focus_row, small_org_data, small_focus_rows, small_org, write_focus_csv

JAN = Month(2022, 1)


def _ingest(tmp_path, rows):
    write_focus_csv(tmp_path / "focus" / "2022-01.csv", rows)
    org = small_org(tmp_path)
    return ingest_month(org, JAN, SnapshotStore(tmp_path / "snap"))


def test_month_rows_summed_exactly_and_other_months_skipped(tmp_path):
    ingested = _ingest(tmp_path, small_focus_rows())
    assert sum(g.cost for g in ingested.groups) == D("582.1800000001")
    assert sum(g.rows for g in ingested.groups) == 9


def test_non_numeric_cost_names_file_field_value(tmp_path):
    rows = small_focus_rows()
    rows[2][9] = "12,50"
    with pytest.raises(InputError, match=r"2022-01.csv: field BilledCost: '12,50' is not a decimal number"):
        _ingest(tmp_path, rows)


def test_bad_timestamp_and_category_and_currency(tmp_path):
    rows = small_focus_rows()
    rows[0][3] = "yesterday"
    with pytest.raises(InputError, match=r"field BillingPeriodStart: 'yesterday'"):
        _ingest(tmp_path, rows)
    rows = small_focus_rows()
    rows[0][5] = "Discount"
    with pytest.raises(InputError, match=r"field ChargeCategory: 'Discount'"):
        _ingest(tmp_path, rows)
    rows = small_focus_rows()
    rows[0][11] = "usd"
    with pytest.raises(InputError, match=r"field BillingCurrency: 'usd'"):
        _ingest(tmp_path, rows)


@pytest.mark.parametrize("code", ["XYZ", "XXX", "XAU", "US$"])
def test_currency_must_be_a_real_iso_4217_code(tmp_path, code):
    rows = small_focus_rows()
    rows[4][11] = code
    with pytest.raises(InputError) as err:
        _ingest(tmp_path, rows)
    assert str(err.value) == (f"{tmp_path / 'focus' / '2022-01.csv'}: field BillingCurrency: {code!r} is not "
                              "an ISO 4217 currency code such as USD, EUR or JPY")


def test_other_real_currencies_are_accepted(tmp_path):
    rows = small_focus_rows()
    rows[4][11] = "JPY"
    ingested = _ingest(tmp_path, rows)
    assert {g.currency for g in ingested.groups} == {"USD", "JPY"}


def test_missing_column_is_named(tmp_path):
    path = tmp_path / "focus" / "2022-01.csv"
    path.parent.mkdir(parents=True)
    path.write_text("ProviderName,BilledCost\nAWS,1.00\n")
    org = small_org(tmp_path)
    with pytest.raises(InputError, match=r"2022-01.csv: missing FOCUS column\(s\) BillingAccountId"):
        ingest_month(org, JAN, SnapshotStore(tmp_path / "snap"))


def test_missing_month_is_an_error_not_an_empty_invoice(tmp_path):
    with pytest.raises(InputError, match="no cost rows for 2022-01"):
        _ingest(tmp_path, [focus_row("111100000000", "1.00", period="2021-12-01T00:00:00Z")])


def test_offsets_are_converted_to_utc(tmp_path):
    # 2022-01-31T23:00-05:00 is February 1st in UTC: not January.
    rows = small_focus_rows()[:1] + [focus_row("111100000000", "5.00", period="2022-01-31T23:00:00-05:00")]
    ingested = _ingest(tmp_path, rows)
    assert sum(g.cost for g in ingested.groups) == D("100.0000000001")


def test_gzip_csv_and_parquet_with_float_and_map_tags(tmp_path):
    plain = write_focus_csv(tmp_path / "raw.csv", small_focus_rows())
    (tmp_path / "focus").mkdir()
    with open(plain, "rb") as src, gzip.open(tmp_path / "focus" / "2022-01.csv.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    org = parse_organization(small_org_data("focus/*.csv.gz"), "o.yaml", tmp_path)
    gz = ingest_month(org, JAN, SnapshotStore(tmp_path / "snap"))
    assert sum(g.cost for g in gz.groups) == D("582.1800000001")

    # Parquet with a float cost column (someone else's export) and MAP tags.
    import datetime as dt
    ts = dt.datetime(2022, 1, 1, tzinfo=dt.timezone.utc)
    table = pa.table({
        "ProviderName": ["AWS", "AWS"], "BillingAccountId": ["999900000000"] * 2,
        "SubAccountId": ["111100000000"] * 2, "BillingPeriodStart": pa.array([ts, ts], pa.timestamp("us", "UTC")),
        "ChargeCategory": ["Usage", "Usage"], "ServiceName": ["EC2", "EC2"], "ServiceCategory": ["Compute"] * 2,
        "BilledCost": pa.array([0.1, 0.2], pa.float64()), "BillingCurrency": ["USD", "USD"],
        "Tags": pa.array([[("2i2c:hub-name", "alpha")], []], pa.map_(pa.string(), pa.string())),
    })
    (tmp_path / "pq").mkdir()
    pq.write_table(table, tmp_path / "pq" / "part-0.parquet")
    org = parse_organization(small_org_data("pq/*.parquet"), "o.yaml", tmp_path)
    got = ingest_month(org, JAN, SnapshotStore(tmp_path / "snap"))
    assert sum(g.cost for g in got.groups) == D("0.3")  # exact, not 0.30000000000000004
    assert {g.tags for g in got.groups} == {("alpha",), (None,)}


# ---- a glob whose files hold the cost column with different types ------------------------------------------------


def _focus_parquet(path, rows, cost_type, tags_map=False, estimated=None):
    """rows: (sub-account, cost as the file holds it, hub tag or None)."""
    import datetime as dt

    ts = dt.datetime(2022, 1, 1, tzinfo=dt.timezone.utc)
    n = len(rows)
    tags = ([[("2i2c:hub-name", t)] if t else [] for _, _, t in rows] if tags_map
            else [f'{{"2i2c:hub-name": "{t}"}}' if t else "{}" for _, _, t in rows])
    columns = {
        "ProviderName": ["AWS"] * n, "BillingAccountId": ["999900000000"] * n, "SubAccountId": [r[0] for r in rows],
        "BillingPeriodStart": pa.array([ts] * n, pa.timestamp("us", "UTC")), "ChargeCategory": ["Usage"] * n,
        "ServiceName": ["EC2"] * n, "ServiceCategory": ["Compute"] * n,
        "BilledCost": pa.array([r[1] for r in rows], cost_type), "BillingCurrency": ["USD"] * n,
        "Tags": pa.array(tags, pa.map_(pa.string(), pa.string())) if tags_map else tags,
    }
    if estimated is not None:
        columns["x_Estimated"] = [estimated] * n
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)


def _cost_by_line(ingested):
    lines = {}
    for g in ingested.groups:
        key = (g.sub_account, g.tags[0])
        lines[key] = lines.get(key, D(0)) + g.cost
    return lines


def test_a_glob_mixing_decimal_and_float_cost_columns_is_summed_exactly(tmp_path):
    shared, dedicated = "111100000000", "222200000000"
    _focus_parquet(tmp_path / "pq" / "a.parquet", [(shared, 0.1, "alpha"), (shared, 1.01, "beta"),
                                                   (dedicated, 0.335, "prod")], pa.float64(), tags_map=True)
    _focus_parquet(tmp_path / "pq" / "b.parquet", [(shared, D("0.2"), "alpha"), (shared, D("1.00"), None),
                                                   (dedicated, D("0.123456789012345678"), "prod")],
                   pa.decimal128(38, 18))
    _focus_parquet(tmp_path / "pq" / "c.parquet", [(dedicated, D("0.335"), "prod"), (shared, D("0.01"), "beta")],
                   pa.decimal128(12, 3))
    _focus_parquet(tmp_path / "pq" / "d.parquet", [(shared, 0.335, None)], pa.float32())
    org = parse_organization(small_org_data("pq/*.parquet"), "o.yaml", tmp_path)
    got = ingest_month(org, JAN, SnapshotStore(tmp_path / "snap"))
    assert _cost_by_line(got) == {
        (shared, "alpha"): D("0.3"),                               # 0.1 (DOUBLE) + 0.2 (DECIMAL)
        (shared, "beta"): D("1.02"),                               # 1.01 (DOUBLE) + 0.01 (DECIMAL(12,3))
        (shared, None): D("1.335"),                                # 1.00 (DECIMAL) + 0.335 (FLOAT)
        (dedicated, "prod"): D("0.793456789012345678"),            # 0.335 + 0.123456789012345678 + 0.335
    }
    # Identical groups from different files are merged into one, rows and all.
    alpha = [g for g in got.groups if g.tags == ("alpha",)]
    assert len(alpha) == 1 and alpha[0].rows == 2
    assert sum(g.rows for g in got.groups) == 9 and got.sources[0].rows == 9


def test_a_float_first_file_does_not_turn_decimal_files_into_floats(tmp_path):
    _focus_parquet(tmp_path / "pq" / "a.parquet", [("111100000000", 0.1, "alpha")], pa.float64())
    _focus_parquet(tmp_path / "pq" / "b.parquet", [("111100000000", D("0.123456789012345678"), "alpha")],
                   pa.decimal128(38, 18))
    org = parse_organization(small_org_data("pq/*.parquet"), "o.yaml", tmp_path)
    got = ingest_month(org, JAN, SnapshotStore(tmp_path / "snap"))
    assert [g.cost for g in got.groups] == [D("0.223456789012345678")]


def test_estimated_rows_are_seen_in_any_file_of_the_glob(tmp_path):
    _focus_parquet(tmp_path / "pq" / "a.parquet", [("111100000000", D("1.00"), "alpha")], pa.decimal128(38, 10))
    _focus_parquet(tmp_path / "pq" / "b.parquet", [("111100000000", D("2.00"), "alpha")], pa.decimal128(38, 10),
                   estimated=True)
    org = parse_organization(small_org_data("pq/*.parquet"), "o.yaml", tmp_path)
    got = ingest_month(org, JAN, SnapshotStore(tmp_path / "snap"))
    assert got.estimated and [g.cost for g in got.groups] == [D("3.00")]


def test_csv_files_are_one_scan_and_exact(tmp_path, monkeypatch):
    import billing.ingest as ingest

    rows = small_focus_rows()
    write_focus_csv(tmp_path / "focus" / "2022-01-a.csv", rows[:4])
    write_focus_csv(tmp_path / "focus" / "2022-01-b.csv", rows[4:])
    # The second file has an x_Estimated column the first lacks.
    b = tmp_path / "focus" / "2022-01-b.csv"
    lines = b.read_text().splitlines()
    b.write_text("\n".join([lines[0] + ",x_Estimated"] + [line + ",false" for line in lines[1:]]) + "\n")
    scans = []
    real = ingest._aggregate_scan
    monkeypatch.setattr(ingest, "_aggregate_scan", lambda con, scan, *a: scans.append(scan) or real(con, scan, *a))
    got = ingest_month(small_org(tmp_path), JAN, SnapshotStore(tmp_path / "snap"))
    assert len(scans) == 1 and scans[0].estimated
    assert sum(g.cost for g in got.groups) == D("582.1800000001") and not got.estimated
    assert _cost_by_line(got)[("111100000000", "alpha")] == D("100.0000000001")


# ---- a cluster whose hub tag no row carries ----------------------------------------------------------------------

SHARED, DEDICATED = "111100000000", "222200000000"
FIX = "fix hub_tag, or set untagged_ok: true on the cluster if its cost really carries no hub tag"


def _owner_rows():
    """The shared cluster's rows carry 'Owner' and 'team', the dedicated one's the configured 2i2c:hub-name."""
    return [
        focus_row(SHARED, "1000.00", tags={"Owner": "alpha", "team": "x"}),
        focus_row(SHARED, "234.555", tags={"Owner": "beta"}),
        focus_row(SHARED, "0.005", tags={"team": "y", "2i2c:hub_name": "z"}),
        focus_row(SHARED, "0.00", tags={"kubernetes.io/created-for": "pvc"}),
        focus_row(SHARED, "5.00", period="2022-02-01T00:00:00Z", tags={"owner": "alpha"}),  # another month
        focus_row(DEDICATED, "7.00", tags={"2i2c:hub-name": "prod"}),
    ]


def _org(tmp_path, rows, fmt="csv", **shared):
    if fmt == "csv":
        write_focus_csv(tmp_path / "focus" / "2022-01.csv", rows)
    data = small_org_data(f"focus/*.{fmt}")
    data["clusters"][0].update(shared)
    return parse_organization(data, "o.yaml", tmp_path)


def test_a_cluster_whose_hub_tag_no_row_carries_stops_the_month(tmp_path):
    org = _org(tmp_path, _owner_rows(), hub_tag="owner")
    with pytest.raises(InputError) as err:
        ingest_month(org, JAN, SnapshotStore(tmp_path / "snap")).refuse_untagged()
    assert str(err.value) == (
        "cluster 'shared' has 1,234.56 USD of cost in 2022-01 (FOCUS files 'focus/*.csv') but none of its rows "
        "carries its hub tag 'owner'; tag keys found on its rows: 'Owner' (differs only in case), 'team', "
        "'2i2c:hub_name', 'kubernetes.io/created-for'; " + FIX)


def test_near_spellings_of_the_hub_tag_come_first(tmp_path):
    rows = [focus_row(SHARED, "1.00", tags={"a": "1", "b": "2", "2i2c:hubname": "alpha"}),
            focus_row(SHARED, "1.00", tags={"a": "1", "user:2i2c:Hub-Name": "beta"}),
            focus_row(DEDICATED, "1.00", tags={"2i2c:hub-name": "prod"})]
    org = _org(tmp_path, rows, hub_tag="2i2c:hub-namе")  # a Cyrillic 'е' in the configuration
    with pytest.raises(InputError, match=r"tag keys found on its rows: 'user:2i2c:Hub-Name' \(similar spelling\), "
                                         r"'2i2c:hubname' \(similar spelling\), 'a', 'b'; fix hub_tag"):
        ingest_month(org, JAN, SnapshotStore(tmp_path / "snap")).refuse_untagged()
    org = _org(tmp_path, rows, hub_tag="2I2C:hub-name")
    with pytest.raises(InputError, match=r"tag keys found on its rows: 'user:2i2c:Hub-Name' \(differs only in case\), "
                                         r"'2i2c:hubname' \(similar spelling\), 'a', 'b'; fix hub_tag"):
        ingest_month(org, JAN, SnapshotStore(tmp_path / "snap")).refuse_untagged()


def test_rows_without_any_tag_say_so(tmp_path):
    rows = [focus_row(SHARED, "2.50"), focus_row(DEDICATED, "1.00", tags={"2i2c:hub-name": "prod"})]
    with pytest.raises(InputError, match=r"has 2.50 USD of cost in 2022-01 .* tag keys found on its rows: none "
                                         r"\(its rows carry no tags at all\); fix hub_tag"):
        ingest_month(_org(tmp_path, rows), JAN, SnapshotStore(tmp_path / "snap")).refuse_untagged()


def test_every_failing_cluster_is_named(tmp_path):
    rows = [focus_row(SHARED, "2.50", tags={"Owner": "alpha"}), focus_row(DEDICATED, "1.00", tags={"Owner": "prod"})]
    data = small_org_data()
    for cluster in data["clusters"]:
        cluster["hub_tag"] = "owner"
    write_focus_csv(tmp_path / "focus" / "2022-01.csv", rows)
    org = parse_organization(data, "o.yaml", tmp_path)
    with pytest.raises(InputError) as err:
        ingest_month(org, JAN, SnapshotStore(tmp_path / "snap")).refuse_untagged()
    lines = str(err.value).splitlines()
    assert lines[0] == "2022-01 is not finalized: 2 clusters have cost but no row carrying their hub tag"
    assert lines[1].startswith("  - cluster 'shared' has 2.50 USD of cost") and "'Owner' (differs only" in lines[1]
    assert lines[2].startswith("  - cluster 'alpha-dedicated' has 1.00 USD of cost")


def test_any_value_of_the_hub_tag_counts_even_an_overhead_one(tmp_path):
    rows = [focus_row(SHARED, "2.50", tags={"2i2c:hub-name": "kube-system"}), focus_row(SHARED, "1.00"),
            focus_row(DEDICATED, "1.00", tags={"2i2c:hub-name": "prod"})]
    ingested = ingest_month(_org(tmp_path, rows), JAN, SnapshotStore(tmp_path / "snap"))
    assert sum(g.cost for g in ingested.groups) == D("4.50")


def test_untagged_ok_and_hubs_matched_by_sub_account_need_no_tag(tmp_path):
    rows = _owner_rows()
    ingested = ingest_month(_org(tmp_path, rows, hub_tag="owner", untagged_ok=True), JAN,
                            SnapshotStore(tmp_path / "snap"))
    assert sum(g.cost for g in ingested.groups) == D("1241.56")
    data = small_org_data()
    data["clusters"][0]["hub_tag"] = "owner"
    data["clusters"][0]["sub_accounts"] = [SHARED, "111100000001"]
    data["hubs"][0] = {"id": "alpha-shared", "cluster": "shared", "community": "alpha", "sub_account": SHARED}
    data["hubs"][1] = {"id": "beta-shared", "cluster": "shared", "community": "beta", "sub_account": "111100000001"}
    org = parse_organization(data, "o.yaml", tmp_path)
    assert sum(g.cost for g in ingest_month(org, JAN, SnapshotStore(tmp_path / "snap")).groups) == D("1241.56")
    data["hubs"][1] = {"id": "beta-shared", "cluster": "shared", "community": "beta", "tag_value": "beta"}
    org = parse_organization(data, "o.yaml", tmp_path)  # one hub still needs the tag
    with pytest.raises(InputError, match="none of its rows carries its hub tag 'owner'"):
        ingest_month(org, JAN, SnapshotStore(tmp_path / "snap")).refuse_untagged()


def test_a_cluster_without_cost_in_the_month_needs_no_tag(tmp_path):
    rows = [focus_row(SHARED, "0.00"), focus_row(DEDICATED, "1.00", tags={"2i2c:hub-name": "prod"})]
    ingest_month(_org(tmp_path, rows), JAN, SnapshotStore(tmp_path / "snap"))


def test_tag_keys_are_listed_from_map_tags_and_mixed_files(tmp_path):
    _focus_parquet(tmp_path / "focus" / "a.parquet", [(SHARED, 0.1, None), (DEDICATED, 1.0, "prod")], pa.float64(),
                   tags_map=True)
    _focus_parquet(tmp_path / "focus" / "b.parquet", [(SHARED, D("0.2"), None)], pa.decimal128(38, 18))
    org = _org(tmp_path, [], fmt="parquet", hub_tag="2I2C:HUB-NAME")
    # The shared rows carry no tag; the dedicated one's 2i2c:hub-name (another sub-account) is not listed.
    with pytest.raises(InputError, match=r"has 0.30 USD of cost .* tag keys found on its rows: none"):
        ingest_month(org, JAN, SnapshotStore(tmp_path / "snap")).refuse_untagged()
    _focus_parquet(tmp_path / "focus" / "b.parquet", [(SHARED, D("0.2"), "alpha")], pa.decimal128(38, 18))
    _focus_parquet(tmp_path / "focus" / "a.parquet", [(SHARED, 0.1, "beta"), (DEDICATED, 1.0, "prod")], pa.float64(),
                   tags_map=True)
    with pytest.raises(InputError, match=r"tag keys found on its rows: '2i2c:hub-name' \(differs only in case\); fix"):
        ingest_month(org, JAN, SnapshotStore(tmp_path / "snap")).refuse_untagged()


def test_a_long_list_of_tag_keys_is_cut_short(tmp_path):
    tags = {f"key{i:02d}": "v" for i in range(15)}
    rows = [focus_row(SHARED, "1.00", tags={**tags, "Owner": "alpha"}),
            focus_row(DEDICATED, "1.00", tags={"2i2c:hub-name": "prod"})]
    with pytest.raises(InputError, match=r"tag keys found on its rows: 'Owner' \(differs only in case\), 'key00', "
                                         r"'key01', .*'key10' and 4 more; fix hub_tag"):
        ingest_month(_org(tmp_path, rows, hub_tag="owner"), JAN, SnapshotStore(tmp_path / "snap")).refuse_untagged()


# ---- corrections (FOCUS ChargeClass "Correction") ----------------------------------------------------------------


def _correction(sub, cost, corrects_period, **kwargs):
    """A row of January's export that corrects the period starting at `corrects_period`."""
    row = focus_row(sub, cost, **kwargs)
    row[4], row[6] = corrects_period, "Correction"
    return row


def _by_correction(ingested):
    found = {}
    for g in ingested.groups:
        key = (g.sub_account, g.tags[0], g.corrects)
        found[key] = found.get(key, D(0)) + g.cost
    return found


def test_a_correction_is_a_group_of_its_own_with_the_month_it_corrects(tmp_path):
    rows = [focus_row(SHARED, "100.00", tags={"2i2c:hub-name": "alpha"}),
            _correction(SHARED, "-12.34", "2021-12-17T00:00:00Z", tags={"2i2c:hub-name": "alpha"}),   # a refund
            _correction(SHARED, "0.50", "2021-11-01T00:00:00Z"),                     # untagged: shared overhead
            _correction(SHARED, "0.25", "2021-11-30T23:00:00-05:00"),                # December 1st in UTC
            _correction(DEDICATED, "3.00", "2022-01-05T00:00:00Z", tags={"2i2c:hub-name": "prod"})]  # this month
    got = _ingest(tmp_path, rows)
    assert _by_correction(got) == {
        (SHARED, "alpha", None): D("100.00"), (SHARED, "alpha", "2021-12"): D("-12.34"),
        (SHARED, None, "2021-11"): D("0.50"), (SHARED, None, "2021-12"): D("0.25"),
        (DEDICATED, "prod", "2022-01"): D("3.00")}
    assert got.corrected_months == ("2021-11", "2021-12", "2022-01")
    assert sum(g.cost for g in got.groups) == D("91.41")


def test_files_without_charge_class_have_no_corrections(tmp_path):
    import csv

    path = write_focus_csv(tmp_path / "focus" / "2022-01.csv", small_focus_rows())
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    drop = rows[0].index("ChargeClass")
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([c for i, c in enumerate(row) if i != drop] for row in rows)
    got = ingest_month(small_org(tmp_path), JAN, SnapshotStore(tmp_path / "snap"))
    assert sum(g.cost for g in got.groups) == D("582.1800000001")
    assert {g.corrects for g in got.groups} == {None} and got.corrected_months == ()


def _parquet_with_class(path, rows, *, with_class=True, period_type=pa.timestamp("us", "UTC")):
    """rows: (cost, ChargeClass, ChargePeriodStart as a datetime or text); all of the shared cluster, hub alpha."""
    import datetime as dt

    ts = dt.datetime(2022, 1, 1, tzinfo=dt.timezone.utc)
    n = len(rows)
    columns = {
        "ProviderName": ["AWS"] * n, "BillingAccountId": ["999900000000"] * n, "SubAccountId": [SHARED] * n,
        "BillingPeriodStart": pa.array([ts] * n, pa.timestamp("us", "UTC")), "ChargeCategory": ["Usage"] * n,
        "ServiceName": ["EC2"] * n, "ServiceCategory": ["Compute"] * n,
        "BilledCost": pa.array([D(r[0]) for r in rows], pa.decimal128(38, 10)), "BillingCurrency": ["USD"] * n,
        "Tags": ['{"2i2c:hub-name": "alpha"}'] * n,
        "ChargePeriodStart": pa.array([r[2] for r in rows], period_type),
    }
    if with_class:
        columns["ChargeClass"] = pa.array([r[1] for r in rows], pa.string())
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)


def test_parquet_corrections_and_a_glob_where_only_some_files_have_charge_class(tmp_path):
    import datetime as dt

    may = dt.datetime(2021, 5, 3, tzinfo=dt.timezone.utc)
    jan = dt.datetime(2022, 1, 1, tzinfo=dt.timezone.utc)
    _parquet_with_class(tmp_path / "pq" / "a.parquet", [("10.00", None, jan), ("-4.25", "Correction", may)])
    _parquet_with_class(tmp_path / "pq" / "b.parquet", [("1.00", None, jan)], with_class=False)
    org = parse_organization(small_org_data("pq/*.parquet"), "o.yaml", tmp_path)
    got = ingest_month(org, JAN, SnapshotStore(tmp_path / "snap"))
    assert _by_correction(got) == {(SHARED, "alpha", None): D("11.00"), (SHARED, "alpha", "2021-05"): D("-4.25")}


def test_csv_and_parquet_give_the_same_corrections(tmp_path):
    import datetime as dt

    rows = [("7.00", None, "2022-01-01T00:00:00Z"), ("-2.00", "Correction", "2021-10-31T12:00:00Z")]
    csv_rows = [focus_row(SHARED, c, tags={"2i2c:hub-name": "alpha"}) for c, _, _ in rows]
    for row, (_, cls, period) in zip(csv_rows, rows):
        row[4], row[6] = period, cls or ""
    write_focus_csv(tmp_path / "focus" / "2022-01.csv", csv_rows)
    from_csv = ingest_month(small_org(tmp_path), JAN, SnapshotStore(tmp_path / "snap"))
    _parquet_with_class(tmp_path / "pq" / "a.parquet",
                        [(c, cls, dt.datetime.fromisoformat(p.replace("Z", "+00:00"))) for c, cls, p in rows])
    org = parse_organization(small_org_data("pq/*.parquet"), "o.yaml", tmp_path)
    from_parquet = ingest_month(org, JAN, SnapshotStore(tmp_path / "snap"))
    assert _by_correction(from_csv) == _by_correction(from_parquet) == {
        (SHARED, "alpha", None): D("7.00"), (SHARED, "alpha", "2021-10"): D("-2.00")}


@pytest.mark.parametrize("charge_class,period,field,message", [
    ("correction", "2021-12-01T00:00:00Z", "ChargeClass",
     "'correction' is not empty or 'Correction' (FOCUS ChargeClass: Correction marks a fix to an earlier period)"),
    ("Regular", "2021-12-01T00:00:00Z", "ChargeClass", "'Regular' is not empty or 'Correction'"),
    ("Correction", "", "ChargePeriodStart", "None is not a UTC timestamp no later than 2022-01 (a Correction row's "
                                            "ChargePeriodStart names the period it corrects)"),
    ("Correction", "soon", "ChargePeriodStart", "'soon' is not a UTC timestamp no later than 2022-01"),
    ("Correction", "2022-02-01T00:00:00Z", "ChargePeriodStart", "'2022-02-01T00:00:00Z' is not a UTC timestamp no "
                                                                "later than 2022-01"),
])
def test_a_bad_charge_class_or_corrected_period_names_file_field_value(tmp_path, charge_class, period, field, message):
    rows = small_focus_rows()
    rows[1][6], rows[1][4] = charge_class, period
    path = tmp_path / "focus" / "2022-01.csv"
    with pytest.raises(InputError) as err:
        _ingest(tmp_path, rows)
    assert str(err.value).startswith(f"{path}: field {field}: {message}")


def test_a_bad_charge_class_in_another_month_does_not_stop_this_one(tmp_path):
    rows = small_focus_rows()
    rows[-1][6] = "Bogus"   # February's row
    assert sum(g.cost for g in _ingest(tmp_path, rows).groups) == D("582.1800000001")


def test_a_correction_needs_the_charge_period_column(tmp_path):
    _parquet_with_class(tmp_path / "pq" / "a.parquet", [("1.00", "Correction", None)])
    path = tmp_path / "pq" / "a.parquet"
    table = pq.read_table(path).drop(["ChargePeriodStart"])
    pq.write_table(table, path)
    org = parse_organization(small_org_data("pq/*.parquet"), "o.yaml", tmp_path)
    with pytest.raises(InputError) as err:
        ingest_month(org, JAN, SnapshotStore(tmp_path / "snap"))
    assert str(err.value).startswith(f"{path}: field ChargePeriodStart: missing, but a row has ChargeClass "
                                     "'Correction'; it must be a UTC timestamp")
