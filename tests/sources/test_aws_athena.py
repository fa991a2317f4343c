"""The Athena source, offline, through the real boto3 client.

Athena's answers are replayed with botocore's Stubber from
tests/data/aws/athena_<scenario>/, one JSON file per call in call order, with
the machinery of test_aws.py (`aws_replay`): "params" is what the connector
must send. ExecutionParameters are always checked exactly; QueryString is
checked exactly in the month and probe scenarios and is "<any>" in the
hand-made error scenarios (the SQL itself is checked by the tests at the end
of this module); the random ClientRequestToken is always "<any>".

Re-recording (never in CI): with real credentials in the default chain and a
FOCUS and a CUR 2.0 table of AWS Data Exports in Athena,

    export BILLING_RECORD=1 BILLING_RECORD_ACCOUNTS=111111111111=<real id>,222222222222=<real id>
    export BILLING_RECORD_NAMES=billing=<database>,focus=<FOCUS table>,cur2=<CUR 2.0 table>
    BILLING_RECORD_NAMES+=,s3://athena-results/billing/=<s3://your result folder/>
    BILLING_RECORD_REGION=<the tables' region> python -m pytest tests/sources/test_aws_athena.py -k recordable

runs the scenarios marked recordable against Athena and rewrites their
folders, with the real ids and names written back as the fake ones (see
test_aws.py). The other scenarios are hand-written and skipped in that mode;
the figures asserted below then need updating to the recorded data.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

import sources.test_aws as aws_tests
from billing.config import Cluster
from billing.errors import SourceError
from billing.months import Month
from billing.sources import SnapshotStore, make_source
from billing.sources.aws import athena
from billing.sources.aws.athena import AthenaQuery
from sources.test_aws import account, aws_env, aws_replay, real_name, summary  # noqa: F401  (fixtures)

MONTH = Month(2022, 3)
TAG = "2i2c:hub-name"
ACCOUNTS = ("111111111111", "222222222222")
OUTPUT = "s3://athena-results/billing/"
EC2, EFS, S3 = "Amazon Elastic Compute Cloud", "Amazon Elastic File System", "Amazon Simple Storage Service"
UTC = dt.timezone.utc


# ---- building the source ------------------------------------------------------------------


def athena_cluster(*, fmt: str = "focus", table: str | None = None, output: str | None = OUTPUT,
                   sub_accounts=ACCOUNTS, hub_tag: str = TAG) -> Cluster:
    source = {"type": "aws_athena", "database": real_name("billing"), "table": real_name(table or fmt),
              "format": fmt}
    if output:
        source["output_location"] = real_name(output)
    return Cluster(id="eks-shared", provider="aws", billing_account="999999999999",
                   sub_accounts=tuple(account(a) for a in sub_accounts), tenancy="shared",
                   split={"rule": "usage"}, hub_tag=hub_tag, source=source)


def athena_source(tmp_path, cluster: Cluster | None = None, **options) -> AthenaQuery:
    source = make_source(cluster or athena_cluster(**options), SimpleNamespace(name="test org"),
                         SnapshotStore(tmp_path / "snapshots"))
    assert isinstance(source, AthenaQuery)
    source.sleep = lambda seconds: pytest.fail("unexpected retry")
    source.polls = []
    source.poll_sleep = source.polls.append
    return source


def rows_of(files) -> list[dict]:
    return [row for path in files.paths for row in pq.read_table(path).to_pylist()]


def tags(hub: str | None) -> str:
    return json.dumps({TAG: hub}) if hub else "{}"


# ---- a month --------------------------------------------------------------------------------


def test_recordable_focus_month_two_pages(tmp_path, aws_replay):
    """One query: table metadata, start, one RUNNING poll, SUCCEEDED, two result pages."""
    replay = aws_replay("athena_focus_month", service="athena", recordable=True)
    source = athena_source(tmp_path)

    files = source.fetch(MONTH)

    replay.done()
    rows = rows_of(files)
    assert summary(rows) == [
        ("111111111111", "Credit", EC2, "{}", Decimal("-20")),
        ("111111111111", "Tax", EC2, tags("staging"), Decimal("6.05")),
        ("111111111111", "Usage", "AWS Data Transfer", "{}", Decimal("0.33")),
        ("111111111111", "Usage", EC2, tags("prod"), Decimal("40.0000000001")),
        ("111111111111", "Usage", EC2, tags("staging"), Decimal("60.5")),
        ("111111111111", "Usage", EFS, "{}", Decimal("10.2499999999")),
        ("222222222222", "Usage", S3, tags("prod"), Decimal("-1.25")),
        ("222222222222", "Usage", S3, tags("prod"), Decimal("0.1")),
        ("222222222222", "Usage", S3, tags("staging"), Decimal("0.2")),
    ]                                      # the VPC group summed to zero and is left out
    assert source.polls == [athena.FIRST_POLL_S]
    first = rows[0]
    assert first["ProviderName"] == "AWS" and first["BillingAccountId"] == "999999999999"
    assert {r["BillingPeriodStart"] for r in rows} == {dt.datetime(2022, 3, 1, tzinfo=UTC)}
    assert {r["BillingCurrency"] for r in rows} == {"USD"}
    by_service = {r["ServiceName"]: r["ServiceCategory"] for r in rows}
    assert by_service == {EC2: "Compute", EFS: "Storage", S3: "Storage",
                          "AWS Data Transfer": "Networking"}       # the table's, or derived when it has none
    assert not any(r["x_Estimated"] for r in rows) and not files.estimated
    assert files.fingerprint and files.format == "parquet"


def test_amounts_stay_exact_decimals(tmp_path, aws_replay):
    """Athena sums DECIMAL(38, 18) and answers text: 0.1 + 0.2 is 0.3, and so is everything after it."""
    aws_replay("athena_focus_month", service="athena")
    rows = rows_of(athena_source(tmp_path).fetch(MONTH))
    s3_usage = [r["BilledCost"] for r in rows if r["ServiceName"] == S3 and r["ChargeClass"] is None]
    assert sorted(s3_usage) == [Decimal("0.1"), Decimal("0.2")]
    assert sum(s3_usage) == Decimal("0.3") and 0.1 + 0.2 != 0.3
    assert sum(r["BilledCost"] for r in rows) == Decimal("96.18")
    assert all(r["BilledCost"].as_tuple().exponent == -18 for r in rows)


def test_a_correction_keeps_the_month_it_corrects(tmp_path, aws_replay):
    aws_replay("athena_focus_month", service="athena")
    rows = rows_of(athena_source(tmp_path).fetch(MONTH))
    corrections = [r for r in rows if r["ChargeClass"] == "Correction"]
    assert [(r["BilledCost"].normalize(), r["ChargePeriodStart"]) for r in corrections] == [
        (Decimal("-1.25"), dt.datetime(2022, 2, 1, tzinfo=UTC))]
    assert {r["ChargePeriodStart"] for r in rows if r["ChargeClass"] is None} == {dt.datetime(2022, 3, 1, tzinfo=UTC)}


def test_second_fetch_reuses_the_snapshot_and_refresh_queries_again(tmp_path, aws_replay):
    replay = aws_replay("athena_focus_month", service="athena", repeat=2)
    source = athena_source(tmp_path)
    first = source.fetch(MONTH)
    assert source.fetch(MONTH) == first            # the Stubber would fail on an extra call
    with pytest.raises(AssertionError):
        replay.done()
    refreshed = source.fetch(MONTH, refresh=True)
    replay.done()
    assert refreshed.fingerprint == first.fingerprint


def test_recordable_cur2_month(tmp_path, aws_replay):
    """CUR 2.0: line item types become FOCUS charge categories; product names become services."""
    replay = aws_replay("athena_cur2_month", service="athena", recordable=True)
    source = athena_source(tmp_path, fmt="cur2", sub_accounts=("111111111111",))

    rows = rows_of(source.fetch(MONTH))

    replay.done()
    eks = "Amazon Elastic Kubernetes Service"
    assert summary(rows) == [
        ("111111111111", "Credit", EC2, "{}", Decimal("-20")),            # Credit
        ("111111111111", "Credit", EC2, "{}", Decimal("-4.1")),           # EdpDiscount
        ("111111111111", "Purchase", EC2, "{}", Decimal("30")),           # SavingsPlanRecurringFee
        ("111111111111", "Tax", EC2, tags("staging"), Decimal("6.05")),
        ("111111111111", "Usage", EC2, tags("prod"), Decimal("40.0000000001")),
        ("111111111111", "Usage", EC2, tags("staging"), Decimal("60.5")),  # SavingsPlanCoveredUsage
        ("111111111111", "Usage", eks, "{}", Decimal("73")),
        ("111111111111", "Usage", "AmazonVPC", "{}", Decimal("16.2")),    # no product name: the product code
    ]
    categories = {r["ServiceName"]: r["ServiceCategory"] for r in rows}
    assert categories == {EC2: "Compute", eks: "Compute", "AmazonVPC": "Networking"}
    assert not any(r["ChargeClass"] for r in rows)


def test_empty_month_gives_no_rows(tmp_path, aws_replay):
    replay = aws_replay("athena_empty_month", service="athena")
    files = athena_source(tmp_path).fetch(MONTH)
    replay.done()
    assert rows_of(files) == []


# ---- faults ---------------------------------------------------------------------------------


def test_throttling_and_server_errors_are_retried(tmp_path, aws_replay):
    """get_table_metadata, start_query_execution, get_query_execution and get_query_results each retry once."""
    replay = aws_replay("athena_throttled_then_ok", service="athena")
    source = athena_source(tmp_path)
    waits = []
    source.sleep = waits.append

    rows = rows_of(source.fetch(MONTH))

    replay.done()
    assert len(waits) == 4 and all(w > 0 for w in waits)
    assert source.polls == []
    assert summary(rows) == [("111111111111", "Usage", EC2, tags("prod"), Decimal("12.5"))]


def test_a_failed_query_says_why(tmp_path, aws_replay):
    replay = aws_replay("athena_query_failed", service="athena")
    with pytest.raises(SourceError, match=re.escape("the Athena query failed: INVALID_CAST_ARGUMENT: Cannot cast "
                                                    "DOUBLE 'NaN' to DECIMAL(38, 18)")) as err:
        athena_source(tmp_path).fetch(MONTH)
    replay.done()
    assert not err.value.transient


def test_a_failure_athena_calls_retryable_is_transient(tmp_path, aws_replay):
    """The query is not rerun here (each run is paid); the flow retries transient source errors."""
    replay = aws_replay("athena_retryable_failure", service="athena")
    with pytest.raises(SourceError, match="Query exhausted resources.*retrying may help") as err:
        athena_source(tmp_path).fetch(MONTH)
    replay.done()
    assert err.value.transient


@pytest.mark.parametrize("name, message", [
    ("athena_access_denied", "AWS denied athena:GetTableMetadata .* the credentials need athena:GetTableMetadata, "
                             "athena:StartQueryExecution, .* glue:GetDatabase, glue:GetTable and glue:GetPartitions "
                             "on billing.focus; s3:GetObject and s3:ListBucket on the export's data; "
                             r".* on the query result location s3://athena-results/billing/"),
    ("athena_table_not_found", "table billing.focus not found in the AwsDataCatalog of region 'us-east-1' "
                               r"\(EntityNotFoundException: Table focus not found.*check the source's database, "
                               "table and region"),
    ("athena_table_dropped", r"table billing.focus not found .*TABLE_NOT_FOUND: line 12:6: Table "
                             "'awsdatacatalog.billing.focus' does not exist"),
    ("athena_cancelled", r"the Athena query 3d4e5f6a-7b8c-4d9e-8f0a-2b3c4d5e6f7a was cancelled \(Query cancelled "
                         r"by user\); fetch again"),
])
def test_permanent_errors_fail_at_once_with_what_to_fix(tmp_path, aws_replay, name, message):
    replay = aws_replay(name, service="athena")
    with pytest.raises(SourceError, match=message) as err:
        athena_source(tmp_path).fetch(MONTH)       # its sleep fails the test on any retry
    replay.done()
    assert not err.value.transient
    assert "123456789012" not in str(err.value)    # the account in AWS's message is masked


def test_no_result_location_says_where_to_set_one(tmp_path, aws_replay):
    replay = aws_replay("athena_no_output_location", service="athena")
    with pytest.raises(SourceError, match=r"Athena has nowhere to write the query results \(No output location "
                                          r"provided.*\): set the source's output_location to an s3:// folder"):
        athena_source(tmp_path, output=None).fetch(MONTH)
    replay.done()


def test_a_query_past_the_deadline_is_stopped(tmp_path, aws_replay, monkeypatch):
    monkeypatch.setattr(athena, "QUERY_WAIT_TIMEOUT_S", 3.0)
    replay = aws_replay("athena_timeout", service="athena")
    source = athena_source(tmp_path)
    with pytest.raises(SourceError, match=r"did not finish within 3 s \(still RUNNING\) and was stopped") as err:
        source.fetch(MONTH)
    replay.done()                                   # including stop_query_execution
    assert err.value.transient
    assert source.polls == [0.5, 1.0, 1.5]          # growing pauses, never past the deadline


@pytest.mark.parametrize("name, message", [
    ("athena_malformed_header", r"malformed Athena response: the result header is \['account', 'cost'\]"),
    ("athena_bad_cost", "Athena result row 1: field 'cost' is 'abc'; expected a decimal number"),
])
def test_malformed_results_name_the_field(tmp_path, aws_replay, name, message):
    replay = aws_replay(name, service="athena")
    with pytest.raises(SourceError, match=message):
        athena_source(tmp_path).fetch(MONTH)
    replay.done()


@pytest.mark.parametrize("reason, fix", [
    ("Insufficient permissions to execute the query. User: arn:aws:sts::123456789012:assumed-role/r/ci is not "
     "authorized to perform: glue:GetPartitions on resource: arn:aws:glue:us-east-1:123456789012:table/billing/focus",
     "the credentials need glue:GetDatabase, glue:GetTable and glue:GetPartitions on billing.focus"),
    ("Access denied when writing output to url: s3://athena-results/billing/q.csv . Please ensure you are allowed "
     "to access the S3 bucket.", "Athena cannot write the query results .* s3:PutObject"),
    ("HIVE_CANNOT_OPEN_SPLIT: Error opening Hive split s3://cur/exports/focus/data/x.parquet: Access Denied "
     "(Service: Amazon S3; Status Code: 403; Error Code: AccessDenied)",
     "Athena cannot read the export's files .* s3:GetObject and s3:ListBucket where billing.focus's LOCATION points"),
    ("COLUMN_NOT_FOUND: line 4:3: Column 'billedcost' cannot be resolved", r"is source.format \('focus'\) right\?"),
])
def test_failed_queries_say_what_to_fix(tmp_path, reason, fix):
    err = athena_source(tmp_path)._failure(reason, retryable=False)
    assert re.search(fix, str(err)) and not err.transient


# ---- sources check --------------------------------------------------------------------------


def test_recordable_probe_reports_counts_and_totals(tmp_path, aws_replay):
    replay = aws_replay("athena_probe", service="athena", recordable=True)
    source = athena_source(tmp_path)
    result = source.check(MONTH)
    replay.done()
    assert result.ok and result.warnings == (), result
    assert result.detail == ("Athena billing.focus (FOCUS) 2022-03: 577 line item(s), 96.18 USD in account(s) "
                             "111111111111, 222222222222; 536 carry tag '2i2c:hub-name'; 4.2 MB scanned")
    assert not (tmp_path / "snapshots").exists()


def test_probe_warns_when_nothing_carries_the_hub_tag(tmp_path, aws_replay):
    replay = aws_replay("athena_probe_untagged", service="athena")
    result = athena_source(tmp_path).check(MONTH)
    replay.done()
    assert result.ok
    assert any("no line item carries the tag '2i2c:hub-name' (as '2i2c:hub-name' or 'user:2i2c:hub-name'): "
               "activate it as a cost allocation tag" in w for w in result.warnings), result.warnings
    assert any("no line items in 2022-03 for account(s) 222222222222" in w for w in result.warnings)


@pytest.mark.parametrize("name, message", [
    ("athena_access_denied", "AWS denied athena:GetTableMetadata"),
    ("athena_probe_table_missing_column", r"table billing.focus lacks the FOCUS column\(s\) \['BilledCost'\] .*"
                                          r"is source.format \('focus'\) right\?"),
])
def test_probe_fails_with_what_to_fix(tmp_path, aws_replay, name, message):
    replay = aws_replay(name, service="athena")
    result = athena_source(tmp_path).check(MONTH)
    replay.done()
    assert not result.ok and re.search(message, result.detail), result.detail


# ---- the SQL and its parameters ----------------------------------------------------------


def table(fmt: str, types: dict[str, str], partitioned: bool = False) -> athena.Table:
    columns = {name.lower(): (name.lower(), kind) for name, kind in types.items()}
    if partitioned:
        columns["billing_period"] = ("billing_period", "string")
    return athena.Table("billing", fmt, columns, frozenset({"billing_period"} if partitioned else ()))


FOCUS_TYPES = {"SubAccountId": "string", "BilledCost": "double", "BillingCurrency": "string",
               "BillingPeriodStart": "timestamp", "ChargeCategory": "string", "ChargeClass": "string",
               "ChargePeriodStart": "timestamp", "ServiceName": "string", "ServiceCategory": "string",
               "Tags": "map<string,string>"}


def test_the_month_query_reads_every_value_from_parameters():
    sql = athena._Sql(athena.LAYOUTS["focus"], table("focus", FOCUS_TYPES, partitioned=True), "x").month_query()
    parameters = athena.query_parameters(MONTH, ACCOUNTS, athena.tag_keys("focus", TAG), partitioned=True)

    assert parameters == ["'2022-03-01 00:00:00'", "'2022-04-01 00:00:00'", "'111111111111,222222222222'",
                          "'2022-03'", "'2i2c:hub-name'", "'2i2c:hub-name'", "'user:2i2c:hub-name'",
                          "'user:2i2c:hub-name'"]
    assert sql.count("?") == len(parameters)
    for value in ("111111111111", "222222222222", "2022", "hub-name", "user:", "primary", "athena-results"):
        assert value not in sql, value             # no value of the configuration or the month is written in
    assert sql.count('"billing"."focus"') == 1
    assert set(re.findall(r"'([^']*)'", sql)) == {"", ",", "%Y-%m"}   # the only literals: the query's own
    # Athena takes `?` only in WHERE: nothing before it has one.
    assert "?" not in sql.split("\nWHERE ")[0] and "?" not in sql.split("\nGROUP BY ")[1]
    # Exact sums: each line item's amount becomes DECIMAL(38, 18) before SUM, the sum comes back as text.
    assert "CAST(SUM(CAST(line_item.BilledCost AS DECIMAL(38, 18))) AS VARCHAR) AS cost" in sql
    assert "WHEN contains(map_keys(line_item.Tags), ?) THEN tag.tag_key = ?" in sql
    assert "ELSE tag.tag_key = ''" in sql          # exactly one row per line item, tagged or not
    assert "AND line_item.billing_period = ?" in sql


def test_the_query_follows_the_table_layout():
    """Tags as JSON text, timestamps as ISO text, no partition: the same query, other expressions."""
    types = dict(FOCUS_TYPES, Tags="string", BillingPeriodStart="string", ChargePeriodStart="string")
    sql = athena._Sql(athena.LAYOUTS["focus"], table("focus", types), "x").month_query()
    assert "CAST(json_parse(NULLIF(line_item.Tags, '')) AS MAP(VARCHAR, VARCHAR))" in sql
    assert "from_iso8601_timestamp(line_item.BillingPeriodStart) >= CAST(? AS TIMESTAMP)" in sql
    assert "billing_period" not in sql
    assert sql.count("?") == len(athena.query_parameters(MONTH, ACCOUNTS, ("a", "b"), partitioned=False))

    no_tags = {k: v for k, v in FOCUS_TYPES.items() if k != "Tags"}
    sql = athena._Sql(athena.LAYOUTS["focus"], table("focus", no_tags), "x").month_query()
    assert "COALESCE(CAST(NULL AS MAP(VARCHAR, VARCHAR)), CAST(MAP() AS MAP(VARCHAR, VARCHAR)))" in sql

    with pytest.raises(SourceError, match="column Tags has type struct<a:string>; expected map<string,string> or JSON"):
        athena._Sql(athena.LAYOUTS["focus"], table("focus", dict(FOCUS_TYPES, Tags="struct<a:string>")),
                    "x").month_query()


def test_the_cur2_query():
    types = {"line_item_usage_account_id": "string", "line_item_line_item_type": "string",
             "line_item_unblended_cost": "double", "line_item_currency_code": "string",
             "bill_billing_period_start_date": "timestamp", "line_item_product_code": "string",
             "product": "map<string,string>", "resource_tags": "map<string,string>"}
    sql = athena._Sql(athena.LAYOUTS["cur2"], table("cur2", types), "x").month_query()
    assert "CAST(SUM(CAST(line_item.line_item_unblended_cost AS DECIMAL(38, 18))) AS VARCHAR) AS cost" in sql
    assert ("COALESCE(NULLIF(element_at(line_item.product, 'product_name'), ''), "
            "NULLIF(line_item.line_item_product_code, '')) AS service") in sql
    assert "contains(split(?, ','), line_item.line_item_usage_account_id)" in sql
    assert athena.tag_keys("cur2", TAG) == ("user_2i2c_hub_name", "user_2i2c_hub_name")
    assert athena.tag_keys("cur2", "Team.Name/x") == ("user_Team_Name_x", "user_team_name_x")


def test_parameter_values_are_quoted_literals():
    assert athena.sql_string("it's") == "'it''s'"
    assert athena.sql_string("a,b") == "'a,b'"


# ---- what the SQL is built from is checked twice ---------------------------------------------


@pytest.mark.parametrize("field, value, message", [
    ("database", 'billing"; DROP TABLE x; --', "is not a Glue name the query can use: lower-case letters, digits"),
    ("table", "Focus", "'Focus' is not a Glue name"), ("table", "a.b", "'a.b' is not a Glue name"),
    ("output_location", "https://x", "should match pattern"), ("workgroup", "a b", "should match pattern"),
    ("format", "cur", "Input should be 'focus' or 'cur2'"),
])
def test_the_configuration_refuses_names_that_would_change_the_sql(field, value, message):
    source = {"type": "aws_athena", "database": "billing", "table": "focus", field: value}
    with pytest.raises(ValidationError, match=field) as err:
        Cluster(id="c", provider="aws", billing_account="1", sub_accounts=("111111111111",), tenancy="shared",
                hub_tag=TAG, source=source)
    assert message in str(err.value)


@pytest.mark.parametrize("change, message", [
    ({"source": {"table": "x\"; --"}}, "source.table 'x\"; --' is not a Glue table name"),
    ({"sub_accounts": ("111111111111", "a,b")}, "sub_accounts value 'a,b' is not a 12-digit AWS account id"),
    ({"hub_tag": "it's"}, "hub_tag \"it's\" cannot be an AWS tag key"),
])
def test_the_source_checks_its_inputs_before_calling_aws(tmp_path, monkeypatch, change, message):
    """Even a configuration built around validation (model_copy) cannot put a value into the SQL."""
    cluster = athena_cluster()
    if "source" in change:
        change = {"source": cluster.source.model_copy(update=change["source"])}
    source = athena_source(tmp_path, cluster.model_copy(update=change))
    monkeypatch.setattr(aws_tests.aws_common, "make_client", lambda *a: pytest.fail("AWS was called"))
    with pytest.raises(SourceError, match=re.escape(message)):
        source.fetch(MONTH)


def test_recorder_writes_real_names_back_as_the_fake_ones(monkeypatch):
    monkeypatch.setattr(aws_tests, "FAKE_TO_REAL_NAMES", {"billing": "cid_data_export", "focus": "focus_2i2c"})
    scrub = aws_tests.Scrubber()
    assert scrub({"QueryString": 'FROM "cid_data_export"."focus_2i2c"'}) == {"QueryString": 'FROM "billing"."focus"'}
