"""Google Cloud: a month's spend from the BigQuery billing export.

The billing API (`google-cloud-billing`) knows which projects a billing
account pays for but not what they spent; the spend lives in the BigQuery
billing export (standard table `gcp_billing_export_v1_<ACCOUNT>` or detailed
table `gcp_billing_export_resource_v1_<ACCOUNT>`). This connector:

- runs one aggregated query per month, grouped by invoice month, project,
  hub label, service and cost type, with credits as their own rows (never
  netted, never dropped), every value passed as a query parameter;
- lists the projects linked to the billing account and warns about the ones
  that spent money in the month but that no GCP cluster claims.

Credentials come from the SDK's application-default chain only (for example
`gcloud auth application-default login`, GOOGLE_APPLICATION_CREDENTIALS or a
workload identity). The identity needs:

- roles/bigquery.dataViewer on the export dataset (read the table),
- roles/bigquery.jobUser on the table's project (queries run there),
- roles/billing.viewer on the billing account (list linked projects; without
  it only the unclaimed-project check is skipped, with a warning).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Iterator, NamedTuple

import requests
from google.api_core import exceptions as api_errors
from google.auth import exceptions as auth_errors
from google.cloud import bigquery
from google.cloud.billing_v1 import CloudBillingClient

from billing.config import GCP_EXPORT_TABLE_PATTERN
from billing.errors import SourceError
from billing.money import round_money, to_decimal
from billing.months import Month
from billing.sources.base import LiveSource, month_is_open

log = logging.getLogger(__name__)

PROVIDER_NAME = "Google Cloud"

# Same rule as the configuration schema (billing.config.GcpBigQuerySource.table), checked again
# here because the table name is the one part of the SQL that cannot be a query parameter.
TABLE_PATTERN = re.compile(GCP_EXPORT_TABLE_PATTERN)

# The export's cost_type -> FOCUS ChargeCategory. Credits come from the credits array instead.
CHARGE_CATEGORY_OF_COST_TYPE = {
    "regular": "Usage",
    "tax": "Tax",
    "adjustment": "Adjustment",
    "rounding_error": "Adjustment",
    "rounding error": "Adjustment",
}

# Only columns present in both the standard and the detailed export table.
MONTH_QUERY = """\
WITH charges AS (
  SELECT
    invoice.month AS invoice_month,
    project.id AS project_id,
    (SELECT value FROM UNNEST(labels) WHERE key = @hub_label LIMIT 1) AS hub,
    service.description AS service,
    cost_type,
    cost,
    currency,
    credits
  FROM `{table}`
  WHERE invoice.month = @invoice_month
    AND project.id IN UNNEST(@projects)
)
SELECT invoice_month, project_id, hub, service,
       'cost' AS line_type, cost_type,
       CAST(NULL AS STRING) AS credit_type, CAST(NULL AS STRING) AS credit_name,
       CAST(SUM(CAST(cost AS NUMERIC)) AS STRING) AS cost, currency
FROM charges
GROUP BY invoice_month, project_id, hub, service, cost_type, currency
UNION ALL
SELECT invoice_month, project_id, hub, service,
       'credit' AS line_type, CAST(NULL AS STRING) AS cost_type,
       credit.type AS credit_type, credit.name AS credit_name,
       CAST(SUM(CAST(credit.amount AS NUMERIC)) AS STRING) AS cost, currency
FROM charges, UNNEST(credits) AS credit
GROUP BY invoice_month, project_id, hub, service, credit_type, credit_name, currency
"""
MONTH_QUERY_COLUMNS = ("invoice_month", "project_id", "hub", "service", "line_type", "cost_type",
                       "credit_type", "credit_name", "cost", "currency")

# Spend per project, for projects linked to the billing account that no cluster claims.
PROJECT_SPEND_QUERY = """\
SELECT project.id AS project_id, currency, CAST(SUM(CAST(cost AS NUMERIC)) AS STRING) AS cost
FROM `{table}`
WHERE invoice.month = @invoice_month
  AND project.id IN UNNEST(@projects)
GROUP BY project_id, currency
"""

API_TIMEOUT_S = 60          # one HTTP call
QUERY_WAIT_TIMEOUT_S = 600  # the whole query, then it is cancelled

ROLES_HINT = ("the service account needs roles/bigquery.dataViewer on the dataset and "
              "roles/bigquery.jobUser on the project")
ADC_HINT = ("no application default credentials: run `gcloud auth application-default login` "
            "or set GOOGLE_APPLICATION_CREDENTIALS")


class GcpClients(NamedTuple):
    bigquery: bigquery.Client
    billing: CloudBillingClient


def invoice_month(month: Month) -> str:
    """The export's invoice.month for a billing month: "YYYYMM"."""
    return f"{month.year:04d}{month.month:02d}"


def checked_table(table: str, source: str) -> str:
    """The export table name, refused unless it matches TABLE_PATTERN."""
    if not isinstance(table, str) or not TABLE_PATTERN.match(table):
        raise SourceError(source, f"source.table {table!r} is not a billing export table name; expected "
                                  "<project>.<dataset>.gcp_billing_export_v1_<ACCOUNT> "
                                  "or ...gcp_billing_export_resource_v1_<ACCOUNT>")
    return table


@dataclass
class BigQueryExport(LiveSource):
    """A GCP cluster's monthly spend, from the billing export in BigQuery."""


    # ---- the client factory: the only place that creates SDK clients -------------------

    def make_clients(self, project: str) -> GcpClients:
        """SDK clients with application default credentials; queries run (and are paid) in `project`.

        Tests replace this method with one that returns clients on a replaying HTTP session.
        """
        return GcpClients(bigquery.Client(project=project), CloudBillingClient(transport="rest"))

    @contextlib.contextmanager
    def _connected(self) -> Iterator[GcpClients]:
        """The SDK clients for one fetch or probe, closed afterwards."""
        try:
            clients = self.make_clients(self.job_project)
        except auth_errors.DefaultCredentialsError as err:
            raise SourceError(self.label, f"{ADC_HINT} ({_first_line(err)})") from None
        try:
            yield clients
        finally:
            clients.bigquery.close()
            clients.billing.transport.close()

    # ---- configuration -------------------------------------------------------------

    @property
    def table(self) -> str:
        return checked_table(self.cluster.source.table, self.label)

    @property
    def job_project(self) -> str:
        """Queries run in the project that holds the export table."""
        return self.table.split(".", 1)[0]

    @property
    def billing_account_name(self) -> str:
        return "billingAccounts/" + self.cluster.billing_account.removeprefix("billingAccounts/")

    # ---- fetch ---------------------------------------------------------------------

    def fetch_records(self, month: Month) -> list[dict[str, Any]]:
        with self._connected() as clients:
            rows = self._month_rows(clients.bigquery, month)
            records = [self._record(n, row, month) for n, row in enumerate(rows)]
            if not records:
                log.warning("%s: the billing export has no rows for invoice month %s in projects %s",
                            self.label, month, ", ".join(self.cluster.sub_accounts))
            for warning in self._unclaimed_warnings(clients, month):
                log.warning("%s: %s", self.label, warning)
        return records

    def _month_params(self, month: Month) -> list:
        return [
            bigquery.ScalarQueryParameter("invoice_month", "STRING", invoice_month(month)),
            bigquery.ArrayQueryParameter("projects", "STRING", list(self.cluster.sub_accounts)),
            bigquery.ScalarQueryParameter("hub_label", "STRING", self.cluster.hub_tag),
        ]

    def _month_rows(self, client, month: Month) -> list[dict[str, Any]]:
        return self._query(client, MONTH_QUERY.format(table=self.table), self._month_params(month))

    def _query(self, client, sql: str, params: list) -> list[dict[str, Any]]:
        """Run a query with retries for transient faults; all result pages, as plain dicts."""
        config = bigquery.QueryJobConfig(query_parameters=params, use_legacy_sql=False)

        def run() -> list[dict[str, Any]]:
            # retry=None / job_retry=None: with_retries is the one retry layer, so attempts stay bounded.
            rows = client.query_and_wait(sql, job_config=config, location=self.cluster.source.location,
                                         api_timeout=API_TIMEOUT_S, wait_timeout=QUERY_WAIT_TIMEOUT_S,
                                         retry=None, job_retry=None)
            return [dict(row.items()) for row in rows]

        return self._call(run, "BigQuery")

    def _call(self, call: Callable[[], Any], api: str) -> Any:
        try:
            return self.retry(call, transient_wait)
        except SourceError:
            raise
        except Exception as exc:  # noqa: BLE001 - every SDK failure becomes an actionable SourceError
            raise SourceError(self.label, permanent_error_message(exc, api, self.table)) from None

    def _record(self, n: int, row: dict[str, Any], month: Month) -> dict[str, Any]:
        """One query row as a RECORD_SCHEMA row; a malformed row raises SourceError naming the field."""
        missing = [c for c in MONTH_QUERY_COLUMNS if c not in row]
        if missing:
            raise SourceError(self.label, f"BigQuery result row {n}: column(s) {', '.join(missing)} missing "
                                          f"(got {', '.join(row) or 'none'})")

        def bad(column: str, expected: str) -> SourceError:
            return SourceError(self.label,
                               f"BigQuery result row {n}: field {column!r} is {row[column]!r}; expected {expected}")

        if row["invoice_month"] != invoice_month(month):
            raise bad("invoice_month", repr(invoice_month(month)))
        if row["project_id"] not in self.cluster.sub_accounts:
            raise bad("project_id", f"one of {list(self.cluster.sub_accounts)}")
        if row["line_type"] == "credit":
            category = "Credit"
        elif row["line_type"] == "cost" and row["cost_type"] in CHARGE_CATEGORY_OF_COST_TYPE:
            category = CHARGE_CATEGORY_OF_COST_TYPE[row["cost_type"]]
        elif row["line_type"] == "cost":
            raise bad("cost_type", f"one of {sorted(CHARGE_CATEGORY_OF_COST_TYPE)}")
        else:
            raise bad("line_type", "'cost' or 'credit'")
        try:
            cost = to_decimal(row["cost"])
        except ValueError:
            raise bad("cost", "a decimal number") from None
        currency = row["currency"]
        if not (isinstance(currency, str) and re.fullmatch(r"[A-Z]{3}", currency)):
            raise bad("currency", "a three-letter currency code")
        return self.record(month, provider=PROVIDER_NAME, sub_account=row["project_id"], category=category,
                           service=row["service"], cost=cost, currency=currency, hub=row["hub"],
                           estimated=month_is_open(month))


    # ---- projects nobody bills -----------------------------------------------------

    def _unclaimed_warnings(self, clients: GcpClients, month: Month) -> list[str]:
        """Warnings for projects on the billing account that spent money in the month but no GCP cluster claims.

        A failure (for example no roles/billing.viewer) becomes a warning, never an error.
        """
        try:
            linked = self._linked_projects(clients.billing)
            claimed = {p for c in self.org.clusters if c.provider == "gcp" for p in c.sub_accounts}
            unclaimed = sorted(set(linked) - claimed)
            if not unclaimed:
                return []
            spend = self._project_spend(clients.bigquery, month, unclaimed)
        except SourceError as err:
            return [f"could not check for projects no cluster claims: {_message_of(err)}"]
        return [f"project {project!r} is linked to {self.billing_account_name} and spent {_amounts(amounts)} "
                f"in {month}, but no GCP cluster claims it: add it to a cluster's sub_accounts or its cost "
                "goes unbilled"
                for project, amounts in sorted(spend.items())]

    def _linked_projects(self, billing_client) -> list[str]:
        def run() -> list[str]:
            pages = billing_client.list_project_billing_info(name=self.billing_account_name, retry=None,
                                                             timeout=API_TIMEOUT_S)
            return [info.project_id for info in pages]

        try:
            return self._call(run, "Cloud Billing")
        except SourceError as err:
            raise SourceError(self.label, f"cannot list the projects of {self.billing_account_name}: "
                                          f"{_message_of(err)} (listing needs roles/billing.viewer "
                                          "on the billing account)") from None

    def _project_spend(self, client, month: Month, projects: list[str]) -> dict[str, dict[str, Decimal]]:
        params = [bigquery.ScalarQueryParameter("invoice_month", "STRING", invoice_month(month)),
                  bigquery.ArrayQueryParameter("projects", "STRING", projects)]
        spend: dict[str, dict[str, Decimal]] = defaultdict(dict)
        for n, row in enumerate(self._query(client, PROJECT_SPEND_QUERY.format(table=self.table), params)):
            try:
                amount = to_decimal(row["cost"])
            except (KeyError, ValueError):
                raise SourceError(self.label, f"BigQuery result row {n}: field 'cost' is "
                                              f"{row.get('cost')!r}; expected a decimal number") from None
            if amount:
                spend[row.get("project_id")][row.get("currency")] = amount
        return dict(spend)

    # ---- probe ---------------------------------------------------------------------

    def probe(self, month: Month) -> tuple[str, list[str]]:
        """Dry-run, then run the month's query; report rows and totals, warn about what looks off."""
        with self._connected() as clients:
            scanned = self._dry_run_bytes(clients.bigquery, month)
            rows = self._month_rows(clients.bigquery, month)
            records = [self._record(n, row, month) for n, row in enumerate(rows)]
            unclaimed = self._unclaimed_warnings(clients, month)
        warnings = []
        if not records:
            warnings.append(f"no rows for invoice month {month} in projects {', '.join(self.cluster.sub_accounts)}: "
                            "is the export older than the month and are the project ids right?")
        else:
            silent = sorted(set(self.cluster.sub_accounts) - {r["SubAccountId"] for r in records})
            if silent:
                warnings.append(f"no spend in {month} for project(s) {', '.join(silent)}: are the sub_accounts right?")
            if not any(r["Tags"] for r in records):
                warnings.append(f"no row carries the label {self.cluster.hub_tag!r}: GKE cost allocation may be off: "
                                "turn it on so the export carries k8s-namespace labels")
        warnings += unclaimed
        for warning in warnings:
            log.warning("%s: %s", self.label, warning)
        return self._summary(records, month, scanned), warnings

    def _dry_run_bytes(self, client, month: Month) -> int | None:
        """Check table, columns and permissions for free; return the bytes the query will scan."""
        config = bigquery.QueryJobConfig(query_parameters=self._month_params(month), use_legacy_sql=False,
                                         dry_run=True, use_query_cache=False)

        def run() -> int | None:
            job = client.query(MONTH_QUERY.format(table=self.table), job_config=config,
                               location=self.cluster.source.location, timeout=API_TIMEOUT_S,
                               retry=None, job_retry=None)
            return job.total_bytes_processed

        return self._call(run, "BigQuery")

    def _summary(self, records: list[dict[str, Any]], month: Month, scanned: int | None) -> str:
        totals: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        for r in records:
            totals[r["BillingCurrency"]][r["ChargeCategory"]] += r["BilledCost"]
        parts = []
        for currency, by_category in sorted(totals.items()):
            detail = ", ".join(f"{c.lower()} {a}" for c, a in sorted(by_category.items()))
            parts.append(f"{currency} {sum(by_category.values(), Decimal(0))} ({detail})")
        labeled = sum(1 for r in records if r["Tags"])
        text = (f"{len(records)} row(s) for {month} from {self.table}: {'; '.join(parts) or 'no cost'}; "
                f"{labeled} carry the label {self.cluster.hub_tag!r}")
        if scanned is not None:
            text += f"; the query scans {scanned / 1e6:.1f} MB"
        return text


# ---- classifying SDK errors ---------------------------------------------------------

TRANSIENT_REASONS = frozenset({"rateLimitExceeded", "backendError", "internalError", "badGateway"})


def transient_wait(exc: BaseException) -> float | None:
    """Seconds to wait before retrying `exc` (0 = no hint), or None when retrying cannot help."""
    if isinstance(exc, api_errors.GoogleAPICallError):
        transient_types = (api_errors.TooManyRequests, api_errors.ServiceUnavailable, api_errors.InternalServerError,
                           api_errors.BadGateway, api_errors.GatewayTimeout)
        if isinstance(exc, transient_types) or _reasons(exc) & TRANSIENT_REASONS:
            return _retry_after(exc)
        return None
    if isinstance(exc, (requests.Timeout, requests.ConnectionError, ConnectionError, auth_errors.TransportError)):
        return 0.0
    return None


def _reasons(exc) -> set[str]:
    return {e.get("reason") for e in (getattr(exc, "errors", None) or []) if isinstance(e, dict)}


def _retry_after(exc) -> float:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        return max(0.0, float(headers.get("Retry-After", 0)))
    except (TypeError, ValueError):
        return 0.0


def permanent_error_message(exc: BaseException, api: str, table: str) -> str:
    """What went wrong and what to do about it, for an error retrying cannot fix."""
    said = _first_line(getattr(exc, "message", None) or exc)
    if isinstance(exc, auth_errors.DefaultCredentialsError):
        return f"{ADC_HINT} ({said})"
    if isinstance(exc, auth_errors.RefreshError):
        return (f"the application default credentials were refused ({said}): "
                "run `gcloud auth application-default login` again or check the service account key")
    if isinstance(exc, api_errors.Unauthorized):
        return f"{api} refused the credentials ({said}): run `gcloud auth application-default login` again"
    if isinstance(exc, (api_errors.Forbidden, api_errors.PermissionDenied)):
        if "quotaExceeded" in _reasons(exc):
            return f"{api} quota exceeded ({said}): wait for the quota to reset or raise it"
        if api == "BigQuery":
            return f"permission denied on {table} ({said}): {ROLES_HINT}"
        return f"{api}: permission denied ({said})"
    if isinstance(exc, api_errors.NotFound):
        if api == "BigQuery":
            return (f"table {table} not found ({said}): is the billing export enabled and the table name right? "
                    "(also check source.location if the dataset is not in the US multi-region)")
        return f"{api}: not found ({said})"
    if isinstance(exc, api_errors.BadRequest):
        return (f"{api} rejected the query ({said}): the connector reads only columns that both the standard "
                "and the detailed export tables have; is source.table a billing export table?")
    if isinstance(exc, api_errors.GoogleAPICallError):
        return f"{api} call failed with HTTP {exc.code} ({said})"
    if isinstance(exc, concurrent.futures.TimeoutError):
        return f"the {api} query did not finish within {QUERY_WAIT_TIMEOUT_S} s and was cancelled"
    if isinstance(exc, (ValueError, TypeError, KeyError, ArithmeticError)):
        return f"malformed response from {api}: {type(exc).__name__}: {said}"
    return f"{api} call failed: {type(exc).__name__}: {said}"


def _amounts(by_currency: dict[str, Decimal]) -> str:
    return ", ".join(f"{currency} {round_money(amount, currency)}" for currency, amount in sorted(by_currency.items()))


def _message_of(err: SourceError) -> str:
    """A SourceError's message without the source prefix."""
    return str(err).removeprefix(f"{err.source}: ")


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else ""
