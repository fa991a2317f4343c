"""Amazon Athena: a month of an AWS Data Exports table (FOCUS or CUR 2.0), summed where it lives.

AWS Data Exports can deliver FOCUS or CUR 2.0 to S3 as Parquet with a Glue
table over it (the Data Exports / Cloud Intelligence Dashboards templates,
or a Glue crawler). Instead of downloading the payer's whole export, this
source asks Athena for the cluster's month, already summed:

1. `get_table_metadata` (no scan, no charge): the table's columns and types,
   so the query reads tags as a map or as JSON text and timestamps as
   timestamps or ISO text, and filters on the `billing_period` partition
   when there is one. A table that lacks a column the format needs is
   refused here, naming the column.
2. `start_query_execution`: ONE aggregate query for the month, grouped by
   sub-account, hub tag value, service, charge category and currency (FOCUS:
   also ServiceCategory, ChargeClass and the month of ChargePeriodStart, so
   a correction keeps the month it corrects). Each line item's amount is
   cast to DECIMAL(38, 18) before SUM and the sum is read back as text:
   no binary float arithmetic anywhere (Athena casts a double to DECIMAL
   through its shortest decimal text, like the S3 source does).
3. `get_query_execution` until the state is SUCCEEDED, FAILED or CANCELLED;
   QUEUED and RUNNING wait with growing pauses (`poll_sleep`), at most
   QUERY_WAIT_TIMEOUT_S in all, after which the query is stopped.
4. `get_query_results`, every page (NextToken); the first row of the first
   page is the header and must name the query's columns.

Query parameters
----------------
Athena takes positional `?` parameters only in WHERE clauses, and reads each
value as SQL literal text; so every value is sent as a quoted string literal
(`sql_string`) and cast in SQL where needed: the month bounds, the
cluster's sub-accounts (one comma-joined string, `contains(split(?, ','), ...)`,
so the SQL is the same whatever their number), the `billing_period`
partition and the hub tag's keys. A tag key cannot be a parameter in the
SELECT list (`element_at(tags, ?)` is refused), so the query unnests each
line item's tags plus one sentinel entry ('' -> NULL) and keeps, in WHERE,
exactly one of them: the hub tag when the line item has it, else the
sentinel. Every line item is counted once; untagged cost comes back with a
NULL hub, never dropped. The only value written into the SQL is
`"database"."table"`, both checked against ATHENA_NAME_PATTERN (as the
configuration is), since an identifier cannot be a parameter.

The two formats
---------------
                    FOCUS (1.0 / 1.2 with AWS columns)     CUR 2.0
    SubAccountId    SubAccountId                           line_item_usage_account_id
    hub tag         Tags['<tag>'] or Tags['user:<tag>']    resource_tags['user_<tag, non-alphanumerics as _>']
    ServiceName     ServiceName                            product['product_name'], else line_item_product_code
    ChargeCategory  ChargeCategory                         common.charge_category(line_item_line_item_type)
    ChargeClass     ChargeClass, ChargePeriodStart month   (none: CUR 2.0 marks no corrections)
    BilledCost      BilledCost                             line_item_unblended_cost
    currency        BillingCurrency                        line_item_currency_code
    the month       BillingPeriodStart                     bill_billing_period_start_date

ServiceCategory is the FOCUS column, or derived from the service name
(`base.service_category`). Rows are flagged x_Estimated while the month is
still running.

IAM permissions
---------------
athena:GetTableMetadata, athena:StartQueryExecution, athena:GetQueryExecution,
athena:GetQueryResults and athena:StopQueryExecution on the workgroup;
glue:GetDatabase, glue:GetTable and glue:GetPartitions on the database and
table; s3:GetObject and s3:ListBucket on the export's data; s3:GetBucketLocation,
s3:GetObject, s3:ListBucket and s3:PutObject on the query result location.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Iterator

from billing.config import ATHENA_NAME_PATTERN
from billing.errors import SourceError
from billing.money import to_decimal
from billing.months import Month
from billing.sources.aws import common
from billing.sources.aws.common import PROVIDER_NAME, Explanation, call_aws, charge_category, scrub
from billing.sources.base import CHARGE_CATEGORIES, LiveSource, month_is_open, service_category

log = logging.getLogger(__name__)

CATALOG = "AwsDataCatalog"
QUERY_WAIT_TIMEOUT_S = 600.0        # the whole query, then it is stopped
FIRST_POLL_S, LONGEST_POLL_S = 0.5, 5.0
RESULT_PAGE_SIZE = 1000             # the most get_query_results returns per call
CORRECTION = "Correction"

NAME_PATTERN = re.compile(ATHENA_NAME_PATTERN)
ACCOUNT_ID = re.compile(r"^\d{12}$")
# What AWS accepts in a tag key: letters, digits, spaces and + - = . _ : / @ (1 to 128 characters).
TAG_KEY = re.compile(r"^[\w .:/=+\-@]{1,128}$")


# ---- the query ------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where one export format keeps what a cost record needs (column names as in the format)."""

    name: str
    sub_account: str
    charge_type: str
    cost: str
    currency: str
    period: str
    service: tuple[tuple[str, str | None], ...]   # (column, key in a map column); the first non-empty wins
    tags: str
    service_category: str | None = None
    charge_class: str | None = None
    charge_period: str | None = None

    @property
    def required(self) -> tuple[str, ...]:
        return (self.sub_account, self.charge_type, self.cost, self.currency, self.period, self.service[-1][0])


LAYOUTS = {
    "focus": Layout("FOCUS", sub_account="SubAccountId", charge_type="ChargeCategory", cost="BilledCost",
                    currency="BillingCurrency", period="BillingPeriodStart", service=(("ServiceName", None),),
                    tags="Tags", service_category="ServiceCategory", charge_class="ChargeClass",
                    charge_period="ChargePeriodStart"),
    "cur2": Layout("CUR 2.0", sub_account="line_item_usage_account_id", charge_type="line_item_line_item_type",
                   cost="line_item_unblended_cost", currency="line_item_currency_code",
                   period="bill_billing_period_start_date",
                   service=(("product", "product_name"), ("line_item_product_code", None)), tags="resource_tags"),
}

PARTITION = "billing_period"       # Data Exports folders are BILLING_PERIOD=YYYY-MM
MONTH_COLUMNS = ("sub_account", "hub", "service", "service_category", "charge_type", "charge_class",
                 "charge_month", "currency", "cost", "line_items")
PROBE_COLUMNS = ("sub_account", "currency", "tagged", "cost", "line_items")
NULL_TEXT = "CAST(NULL AS VARCHAR)"
EMPTY_TAGS = "CAST(MAP() AS MAP(VARCHAR, VARCHAR))"

QUERY = """\
SELECT
  {select}
FROM "{database}"."{table}" AS line_item
CROSS JOIN UNNEST(map_concat(COALESCE({tags}, {empty}), MAP(ARRAY[''], ARRAY[CAST(NULL AS VARCHAR)])))
  AS tag (tag_key, tag_value)
WHERE {period} >= CAST(? AS TIMESTAMP)
  AND {period} < CAST(? AS TIMESTAMP)
  AND contains(split(?, ','), {sub_account}){partition}
  AND CASE
        WHEN contains(map_keys({tags}), ?) THEN tag.tag_key = ?
        WHEN contains(map_keys({tags}), ?) THEN tag.tag_key = ?
        ELSE tag.tag_key = ''
      END
GROUP BY {group_by}"""


@dataclass(frozen=True)
class Table:
    """A Glue table as Athena describes it: column name (lower case) -> (name, type)."""

    database: str
    name: str
    columns: dict[str, tuple[str, str]]
    partitions: frozenset[str]

    def has(self, column: str) -> bool:
        return column.lower() in self.columns

    def type_of(self, column: str) -> str:
        return self.columns[column.lower()][1].lower()

    @staticmethod
    def ref(column: str) -> str:
        """The column in the query, by the layout's own name (Athena matches names case-insensitively)."""
        return f"line_item.{column}"


class _Sql:
    """The SQL expressions of one layout over one table; refuses columns of a type it cannot read."""

    def __init__(self, layout: Layout, table: Table, label: str):
        self.layout, self.table, self.label = layout, table, label

    def _wrong_type(self, column: str, expected: str) -> SourceError:
        return SourceError(self.label, f"table {self.table.database}.{self.table.name}: column {column} has type "
                                       f"{self.table.type_of(column)}; expected {expected}")

    def text(self, column: str) -> str:
        ref = self.table.ref(column)
        return ref if _is_text(self.table.type_of(column)) else f"CAST({ref} AS VARCHAR)"

    def optional_text(self, column: str | None) -> str:
        """A column the table may lack; empty text is read as NULL."""
        if not column or not self.table.has(column):
            return NULL_TEXT
        return f"NULLIF({self.text(column)}, '')"

    def timestamp(self, column: str) -> str:
        kind = self.table.type_of(column)
        if kind.startswith(("timestamp", "date")):
            return self.table.ref(column)
        if _is_text(kind):
            return f"from_iso8601_timestamp({self.table.ref(column)})"
        raise self._wrong_type(column, "a timestamp or ISO 8601 text")

    def map_value(self, column: str, key: str) -> str:
        kind = self.table.type_of(column)
        if kind.startswith("map"):
            return f"element_at({self.table.ref(column)}, '{key}')"
        if _is_text(kind):
            return f"json_extract_scalar({self.table.ref(column)}, '$.{key}')"
        raise self._wrong_type(column, "a map or JSON text")

    def tags(self) -> str:
        column = self.layout.tags
        if not self.table.has(column):
            return "CAST(NULL AS MAP(VARCHAR, VARCHAR))"
        kind = self.table.type_of(column)
        if kind.startswith("map"):
            return self.table.ref(column)
        if _is_text(kind):
            return f"CAST(json_parse(NULLIF({self.table.ref(column)}, '')) AS MAP(VARCHAR, VARCHAR))"
        raise self._wrong_type(column, "map<string,string> or JSON text")

    def service(self) -> str:
        parts = [f"NULLIF({self.map_value(column, key) if key else self.text(column)}, '')"
                 for column, key in self.layout.service if self.table.has(column)]
        return parts[0] if len(parts) == 1 else f"COALESCE({', '.join(parts)})"

    def charge_month(self) -> str:
        column = self.layout.charge_period
        if not column or not self.table.has(column):
            return NULL_TEXT
        return f"date_format({self.timestamp(column)}, '%Y-%m')"

    def cost_sum(self) -> str:
        return f"CAST(SUM(CAST({self.table.ref(self.layout.cost)} AS DECIMAL(38, 18))) AS VARCHAR)"

    def query(self, select: list[tuple[str, str]], grouped: int) -> str:
        return QUERY.format(
            select=",\n  ".join(f"{expr} AS {name}" for name, expr in select),
            database=self.table.database, table=self.table.name, tags=self.tags(), empty=EMPTY_TAGS,
            period=self.timestamp(self.layout.period), sub_account=self.text(self.layout.sub_account),
            partition=(f"\n  AND {self.table.ref(PARTITION)} = ?" if PARTITION in self.table.partitions else ""),
            group_by=", ".join(str(n) for n in range(1, grouped + 1)))

    def month_query(self) -> str:
        """The month, summed per record-schema key (columns MONTH_COLUMNS)."""
        expressions = {
            "sub_account": self.text(self.layout.sub_account),
            "hub": "tag.tag_value",
            "service": self.service(),
            "service_category": self.optional_text(self.layout.service_category),
            "charge_type": self.text(self.layout.charge_type),
            "charge_class": self.optional_text(self.layout.charge_class),
            "charge_month": self.charge_month(),
            "currency": self.text(self.layout.currency),
            "cost": self.cost_sum(),
            "line_items": "COUNT(*)",
        }
        return self.query([(c, expressions[c]) for c in MONTH_COLUMNS], len(MONTH_COLUMNS) - 2)

    def probe_query(self) -> str:
        """Line items and totals per sub-account, currency and whether they carry the hub tag (PROBE_COLUMNS)."""
        expressions = {
            "sub_account": self.text(self.layout.sub_account),
            "currency": self.text(self.layout.currency),
            "tagged": "tag.tag_key <> ''",
            "cost": self.cost_sum(),
            "line_items": "COUNT(*)",
        }
        return self.query([(c, expressions[c]) for c in PROBE_COLUMNS], len(PROBE_COLUMNS) - 2)


def _is_text(kind: str) -> bool:
    return kind.startswith(("string", "varchar", "char"))


def sql_string(value: str) -> str:
    """`value` as an SQL string literal: what Athena expects in ExecutionParameters."""
    return "'" + value.replace("'", "''") + "'"


def tag_keys(fmt: str, hub_tag: str) -> tuple[str, str]:
    """The two spellings of the hub tag's key in a table of format `fmt`, the preferred one first.

    FOCUS keeps the key (AWS writes user-defined tags as "user:<key>"; a plain
    key, if present, wins as in the S3 source). CUR 2.0 writes "user_" and
    the key with every character other than a letter, digit or "_" as "_"
    (`2i2c:hub-name` -> `user_2i2c_hub_name`), in its own case or lower case.
    """
    if fmt == "focus":
        return hub_tag, f"user:{hub_tag}"
    key = "user_" + re.sub(r"[^A-Za-z0-9_]", "_", hub_tag)
    return key, key.lower()


def query_parameters(month: Month, accounts: tuple[str, ...], keys: tuple[str, str], partitioned: bool) -> list[str]:
    """ExecutionParameters, in the order of the `?` in QUERY."""
    values = [f"{month.start.isoformat()} 00:00:00", f"{month.end.isoformat()} 00:00:00", ",".join(accounts)]
    if partitioned:
        values.append(str(month))
    values += [keys[0], keys[0], keys[1], keys[1]]
    return [sql_string(v) for v in values]


# ---- the source -----------------------------------------------------------------------


@dataclass
class AthenaQuery(LiveSource):
    """A cluster's month from a FOCUS or CUR 2.0 table of AWS Data Exports, queried with Athena."""

    # How the source waits between polls of a running query; tests pass a recorder.
    poll_sleep: Callable[[float], None] = field(default=time.sleep, repr=False, kw_only=True)

    # -- configuration -----------------------------------------------------------------

    @property
    def config(self):
        return self.cluster.source

    @property
    def layout(self) -> Layout:
        return LAYOUTS[self.config.format]

    @property
    def table_name(self) -> str:
        return f"{self.config.database}.{self.config.table}"

    def _checked(self) -> None:
        """Names and values the query is built from, checked again here (the SQL must not depend on trust)."""
        for what in ("database", "table"):
            value = getattr(self.config, what)
            if not (isinstance(value, str) and NAME_PATTERN.match(value)):
                raise SourceError(self.label, f"source.{what} {value!r} is not a Glue {what} name: use lower-case "
                                              "letters, digits, '_' and '-'")
        for account in self.cluster.sub_accounts:
            if not ACCOUNT_ID.match(account):
                raise SourceError(self.label, f"sub_accounts value {account!r} is not a 12-digit AWS account id")
        if not TAG_KEY.match(self.cluster.hub_tag):
            raise SourceError(self.label, f"hub_tag {self.cluster.hub_tag!r} cannot be an AWS tag key (letters, "
                                          "digits, spaces and + - = . _ : / @, at most 128)")

    def _client(self):
        self._checked()
        return common.make_client("athena", self.config.region)

    # -- errors ------------------------------------------------------------------------

    def _permissions(self) -> str:
        where = (f"the query result location {self.config.output_location}" if self.config.output_location
                 else f"the query result location of workgroup {self.config.workgroup!r}")
        return (f"athena:GetTableMetadata, athena:StartQueryExecution, athena:GetQueryExecution, "
                f"athena:GetQueryResults and athena:StopQueryExecution on workgroup {self.config.workgroup!r}; "
                f"glue:GetDatabase, glue:GetTable and glue:GetPartitions on {self.table_name}; s3:GetObject and "
                f"s3:ListBucket on the export's data; s3:GetBucketLocation, s3:GetObject, s3:ListBucket and "
                f"s3:PutObject on {where}")

    def _not_found(self, said: str) -> str:
        return (f"table {self.table_name} not found in the {CATALOG} of region {self.config.region!r} ({said}): "
                "check the source's database, table and region; the table is made by the Data Exports "
                "Athena/CloudFormation setup or a Glue crawler over the export")

    def _no_output(self, said: str) -> str:
        return (f"Athena has nowhere to write the query results ({said}): set the source's output_location to an "
                f"s3:// folder the credentials may write, or give workgroup {self.config.workgroup!r} a query "
                "result location")

    def _explain(self, operation: str) -> Explanation:
        def explain(code: str, message: str) -> str | None:
            lowered = message.lower()
            if code in ("AccessDeniedException", "AccessDenied") or "not authorized" in lowered:
                return f"AWS denied {operation} ({message}): the credentials need {self._permissions()}"
            if code in ("MetadataException", "EntityNotFoundException", "ResourceNotFoundException") and (
                    "not found" in lowered or "entitynotfound" in lowered or "does not exist" in lowered):
                return self._not_found(message)
            if code == "InvalidRequestException":
                if "output location" in lowered:
                    return self._no_output(message)
                if "workgroup" in lowered:
                    return f"Athena rejected workgroup {self.config.workgroup!r} ({message}): check source.workgroup"
                return f"Athena rejected {operation}: {message}"
            return None
        return explain

    def _failure(self, reason: str, retryable: bool) -> SourceError:
        """A FAILED query as a SourceError that says what to fix."""
        lowered = reason.lower()
        if any(s in reason for s in ("TABLE_NOT_FOUND", "SCHEMA_NOT_FOUND", "EntityNotFound")):
            return SourceError(self.label, self._not_found(reason))
        if "glue:" in lowered or ("glue" in lowered and ("not authorized" in lowered or "denied" in lowered)):
            return SourceError(self.label, f"Athena cannot read the table definition ({reason}): the credentials "
                                           f"need glue:GetDatabase, glue:GetTable and glue:GetPartitions on "
                                           f"{self.table_name}")
        if "output location" in lowered or "writing output" in lowered:
            return SourceError(self.label, self._no_output(reason) if "no output location" in lowered else
                               f"Athena cannot write the query results ({reason}): the credentials need "
                               "s3:PutObject, s3:GetObject, s3:ListBucket and s3:GetBucketLocation there (and "
                               "kms:GenerateDataKey if the results are encrypted with a KMS key)")
        if "access denied" in lowered or "permission denied" in lowered or "not authorized" in lowered:
            return SourceError(self.label, f"Athena cannot read the export's files ({reason}): the credentials "
                                           f"need s3:GetObject and s3:ListBucket where {self.table_name}'s "
                                           "LOCATION points")
        if "COLUMN_NOT_FOUND" in reason:
            return SourceError(self.label, f"the query reads a column {self.table_name} lacks ({reason}): is "
                                           f"source.format ({self.config.format!r}) right?")
        hint = "; Athena says retrying may help: fetch again" if retryable else ""
        return SourceError(self.label, f"the Athena query failed: {reason}{hint}", transient=retryable)

    def _call(self, operation: str, call: Callable[[], Any]) -> Any:
        return call_aws(self.label, call, explain=self._explain(operation), sleep=self.sleep)

    def _malformed(self, what: str) -> SourceError:
        return SourceError(self.label, f"malformed Athena response: {what}")

    # -- calls -------------------------------------------------------------------------

    def _table(self, client) -> Table:
        """The Glue table's columns and partitions, checked against the layout."""
        answer = self._call("athena:GetTableMetadata", lambda: client.get_table_metadata(
            CatalogName=CATALOG, DatabaseName=self.config.database, TableName=self.config.table,
            WorkGroup=self.config.workgroup))
        meta = answer.get("TableMetadata") or {}
        columns = {c["Name"].lower(): (c["Name"], c.get("Type", "")) for c in meta.get("Columns") or []
                   if isinstance(c, dict) and c.get("Name")}
        partitions = {c["Name"].lower(): (c["Name"], c.get("Type", "")) for c in meta.get("PartitionKeys") or []
                      if isinstance(c, dict) and c.get("Name")}
        table = Table(self.config.database, self.config.table, {**columns, **partitions}, frozenset(partitions))
        missing = [c for c in self.layout.required if not table.has(c)]
        if missing:
            raise SourceError(self.label, f"table {self.table_name} lacks the {self.layout.name} column(s) {missing} "
                                          f"(it has {sorted(n for n, _ in columns.values())}): is source.format "
                                          f"({self.config.format!r}) right?")
        return table

    def _run(self, client, sql: str, parameters: list[str], columns: tuple[str, ...]) -> tuple[list[dict], int]:
        """Run one query to the end; its rows as dicts and the bytes it scanned."""
        request: dict[str, Any] = {
            "QueryString": sql,
            "ClientRequestToken": str(uuid.uuid4()),   # one per query: a retried start never runs it twice
            "QueryExecutionContext": {"Catalog": CATALOG, "Database": self.config.database},
            "WorkGroup": self.config.workgroup,
            "ExecutionParameters": parameters,
        }
        if self.config.output_location:
            request["ResultConfiguration"] = {"OutputLocation": self.config.output_location}
        started = self._call("athena:StartQueryExecution", lambda: client.start_query_execution(**request))
        query_id = started.get("QueryExecutionId")
        if not isinstance(query_id, str) or not query_id:
            raise self._malformed("start_query_execution returned no QueryExecutionId")
        execution = self._wait(client, query_id)
        scanned = int((execution.get("Statistics") or {}).get("DataScannedInBytes") or 0)
        return list(self._results(client, query_id, columns)), scanned

    def _wait(self, client, query_id: str) -> dict:
        """Poll until the query ends; FAILED and CANCELLED raise, a query past the deadline is stopped."""
        waited, pause = 0.0, FIRST_POLL_S
        while True:
            answer = self._call("athena:GetQueryExecution",
                                lambda: client.get_query_execution(QueryExecutionId=query_id))
            execution = answer.get("QueryExecution") or {}
            status = execution.get("Status") or {}
            state = status.get("State")
            if state == "SUCCEEDED":
                return execution
            if state == "FAILED":
                error = status.get("AthenaError") or {}
                reason = scrub(str(status.get("StateChangeReason") or error.get("ErrorMessage") or "no reason given"))
                raise self._failure(reason, bool(error.get("Retryable")))
            if state == "CANCELLED":
                reason = scrub(str(status.get("StateChangeReason") or "no reason given"))
                raise SourceError(self.label, f"the Athena query {query_id} was cancelled ({reason}); fetch again")
            if state not in ("QUEUED", "RUNNING"):
                raise self._malformed(f"query {query_id} is in unknown state {state!r}")
            if waited >= QUERY_WAIT_TIMEOUT_S:
                self._stop(client, query_id)
                raise SourceError(self.label, f"the Athena query {query_id} did not finish within "
                                              f"{QUERY_WAIT_TIMEOUT_S:.0f} s (still {state}) and was stopped; fetch "
                                              "again later", transient=True)
            pause = min(pause, QUERY_WAIT_TIMEOUT_S - waited)
            self.poll_sleep(pause)
            waited += pause
            pause = min(LONGEST_POLL_S, pause * 2)

    def _stop(self, client, query_id: str) -> None:
        try:
            self._call("athena:StopQueryExecution", lambda: client.stop_query_execution(QueryExecutionId=query_id))
        except SourceError as err:
            log.warning("%s: could not stop Athena query %s: %s", self.label, query_id, err)

    def _results(self, client, query_id: str, columns: tuple[str, ...]) -> Iterator[dict[str, str | None]]:
        """Every result row as {column: text or None}; the first row of the first page is the header."""
        token, seen, first = None, set(), True
        while True:
            params = {"QueryExecutionId": query_id, "MaxResults": RESULT_PAGE_SIZE}
            if token:
                params["NextToken"] = token
            page = self._call("athena:GetQueryResults", lambda: client.get_query_results(**params))
            rows = (page.get("ResultSet") or {}).get("Rows")
            if not isinstance(rows, list):
                raise self._malformed("get_query_results returned no ResultSet.Rows")
            for n, row in enumerate(rows):
                values = [cell.get("VarCharValue") for cell in (row or {}).get("Data") or []]
                if first and n == 0:
                    if tuple(values) != columns:
                        raise self._malformed(f"the result header is {values}; expected {list(columns)}")
                    continue
                if len(values) != len(columns):
                    raise self._malformed(f"a result row has {len(values)} value(s); expected {len(columns)}")
                yield dict(zip(columns, values))
            first = False
            token = page.get("NextToken")
            if not token:
                return
            if token in seen:
                raise self._malformed("get_query_results returned the same NextToken twice")
            seen.add(token)

    def _query(self, client, table: Table, kind: str, month: Month) -> tuple[list[dict], int]:
        sql = _Sql(self.layout, table, self.label)
        text, columns = (sql.month_query(), MONTH_COLUMNS) if kind == "month" else (sql.probe_query(), PROBE_COLUMNS)
        parameters = query_parameters(month, self.cluster.sub_accounts, tag_keys(self.config.format,
                                      self.cluster.hub_tag), PARTITION in table.partitions)
        return self._run(client, text, parameters, columns)

    # -- fetch -------------------------------------------------------------------------

    def fetch_records(self, month: Month) -> list[dict[str, Any]]:
        client = self._client()
        rows, scanned = self._query(client, self._table(client), "month", month)
        log.info("%s: %d group(s) for %s from %s (%.1f MB scanned)", self.label, len(rows), month, self.table_name,
                 scanned / 1e6)
        records = [self._record(n, row, month) for n, row in enumerate(rows)]
        if not records:
            log.warning("%s: %s has no line items for %s in account(s) %s", self.label, self.table_name, month,
                        ", ".join(self.cluster.sub_accounts))
        return [r for r in records if r["BilledCost"] != 0]

    def _record(self, n: int, row: dict[str, str | None], month: Month) -> dict[str, Any]:
        """One result row as a RECORD_SCHEMA row; a malformed value raises SourceError naming the field."""
        def bad(column: str, expected: str) -> SourceError:
            return SourceError(self.label, f"Athena result row {n + 1}: field {column!r} is {row[column]!r}; "
                                           f"expected {expected}")

        if row["sub_account"] not in self.cluster.sub_accounts:
            raise bad("sub_account", f"one of {list(self.cluster.sub_accounts)}")
        kind = row["charge_type"] or ""
        if self.config.format == "focus":
            if kind not in CHARGE_CATEGORIES:
                raise bad("charge_type", f"a FOCUS ChargeCategory, one of {list(CHARGE_CATEGORIES)}")
            category = kind
        else:
            category = charge_category(kind)
        try:
            cost = to_decimal(row["cost"])
        except (TypeError, ValueError):
            raise bad("cost", "a decimal number") from None
        if not row["service"]:
            raise bad("service", "a service name")
        record = self.record(month, provider=PROVIDER_NAME, sub_account=row["sub_account"], category=category,
                             service=row["service"], cost=cost, currency=row["currency"] or "", hub=row["hub"],
                             estimated=month_is_open(month))
        record["ServiceCategory"] = row["service_category"] or service_category(row["service"])
        if row["charge_class"] is not None:
            if row["charge_class"] != CORRECTION:
                raise bad("charge_class", f"empty or {CORRECTION!r}")
            record["ChargeClass"] = CORRECTION
            record["ChargePeriodStart"] = self._corrected_month(bad, row["charge_month"], month)
        return record

    @staticmethod
    def _corrected_month(bad: Callable[[str, str], SourceError], text: str | None, month: Month) -> dt.datetime:
        """The first instant of the month a Correction row corrects (no later than `month`)."""
        try:
            corrected = Month.parse(text or "")
        except ValueError:
            raise bad("charge_month", "a month YYYY-MM") from None
        if corrected > month:
            raise bad("charge_month", f"no later than {month}")
        return common.month_start(corrected)

    # -- probe -------------------------------------------------------------------------

    def probe(self, month: Month) -> tuple[str, list[str]]:
        """Counts and totals for the month: proves access end to end and shows what is there."""
        client = self._client()
        rows, scanned = self._query(client, self._table(client), "probe", month)
        totals: dict[str, Decimal] = defaultdict(Decimal)
        line_items = tagged = 0
        accounts = set()
        for n, row in enumerate(rows):
            try:
                count, cost = int(row["line_items"] or ""), to_decimal(row["cost"])
            except (TypeError, ValueError):
                raise self._malformed(f"probe row {n + 1} has line_items {row['line_items']!r} and cost "
                                      f"{row['cost']!r}") from None
            totals[row["currency"] or "?"] += cost
            line_items += count
            tagged += count if row["tagged"] == "true" else 0
            accounts.add(row["sub_account"])
        amount = ", ".join(f"{format(v.normalize(), 'f')} {c}" for c, v in sorted(totals.items())) or "no cost"
        detail = (f"Athena {self.table_name} ({self.layout.name}) {month}: {line_items} line item(s), {amount} in "
                  f"account(s) {', '.join(self.cluster.sub_accounts)}; {tagged} carry tag {self.cluster.hub_tag!r}; "
                  f"{scanned / 1e6:.1f} MB scanned")
        return detail, self._warnings(month, line_items, tagged, accounts)

    def _warnings(self, month: Month, line_items: int, tagged: int, accounts: set) -> list[str]:
        warnings = []
        if not line_items:
            warnings.append(f"no line items in {month} for these accounts: is the month's data in the table (a new "
                            f"{PARTITION} partition may need the crawler or MSCK REPAIR TABLE) and are the "
                            "sub_accounts right?")
        else:
            silent = sorted(set(self.cluster.sub_accounts) - accounts)
            if silent:
                warnings.append(f"no line items in {month} for account(s) {', '.join(silent)}: are the sub_accounts "
                                "right?")
            if not tagged:
                keys = " or ".join(repr(k) for k in dict.fromkeys(tag_keys(self.config.format, self.cluster.hub_tag)))
                warnings.append(f"no line item carries the tag {self.cluster.hub_tag!r} (as {keys}): activate it as a "
                                "cost allocation tag in the payer account (Billing console, Cost allocation tags); "
                                "until then all cost is reported as support")
        if month_is_open(month):
            warnings.append(f"{month} has not ended: its figures are estimates")
        return warnings
