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
