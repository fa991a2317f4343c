"""Azure cost source: the Cost Management query API.

Reads one cluster's month at its configured scope and hands back rows in the
normalized record schema; `LiveSource` snapshots them with a content hash,
so a rerun does not query Azure again unless asked (`refresh=True`).

Credentials come only from azure-identity's DefaultAzureCredential (`az
login`, a managed identity, or AZURE_CLIENT_ID/AZURE_TENANT_ID/
AZURE_CLIENT_SECRET), created on first use by `default_credential`, which the
tests replace. The configuration never holds secrets.

The query
---------
`query.usage` accepts at most two groupings (API reference and spec schema:
"up to 2 group by clauses"), but a correct record needs four: the hub tag,
the service, the subscription (SubAccountId) and the charge type (credits,
refunds and tax must stay visible as such). So, as for AWS, the month is
read in two steps, each query daily with Sum(Cost):

1. One discovery query grouped by SubscriptionId and ChargeType, filtered to
   the cluster's sub_accounts. It lists the (subscription, charge type)
   pairs and their totals.
2. For each pair, one query grouped by TagKey (the hub tag) and ServiceName,
   filtered to exactly that subscription and charge type.

The filters of step 2 partition the month; each detail query must add up to
its discovery total (to the cent), else the data changed while reading.
Calls: 1 + pairs (plus pages), typically 2-4 per cluster and month.
PricingModel is not read: BilledCost needs only the charge type.

ChargeType -> FOCUS ChargeCategory (`charge_category`): Usage,
UnusedReservation, UnusedSavingsPlan -> Usage (FOCUS bills unused commitment
as usage); Purchase -> Purchase; Refund -> Credit (negative, on its own rows);
Tax -> Tax; anything else (RoundingAdjustment ...) -> Adjustment (logged).
TagKey/TagValue "" is untagged cost and gives Tags {}. Azure does not mark
figures as final: rows of a month that has not ended are x_Estimated.

Paging: the SDK does not follow `nextLink`; the connector POSTs the same body
to it (only on the query's own https host, since the link receives the
bearer token) until it is empty.

Throttling: a 429 carries Retry-After and/or
x-ms-ratelimit-microsoft.costmanagement-{qpu,entity,tenant}-retry-after
(seconds), which azure-core's retry policy does not read. azure-core's
retries are off; `with_retries` waits the largest of them. 5xx, 408 and
connection errors/timeouts are retried too; anything else fails at once
with a message that says what to do.

Exactness: left to itself the SDK parses bodies with plain `json.loads`
(floats). Every call here asks for a streamed response, so neither the SDK
nor azure-core's ContentDecodePolicy parses the body; the raw bytes are
parsed once, here, with `parse_float=Decimal` (each number token becomes a
Decimal built from its own digits) and `parse_constant` refusing
NaN/Infinity. No binary float is ever created for money.

Access: the Cost Management Reader role (or Reader) on a subscription or
resource-group scope; on a billing scope, a billing reader role on that
account or profile.
"""
from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Iterator
from urllib.parse import urlparse

from billing.errors import SourceError
from billing.money import round_money, to_decimal
from billing.months import Month
from billing.sources.base import LiveSource, month_is_open

log = logging.getLogger(__name__)

PROVIDER_NAME = "Microsoft"
UTC = dt.timezone.utc

# Result columns, matched by name (case-insensitively), never by position.
COST_COLUMNS = ("Cost", "PreTaxCost", "totalCost", "CostUSD", "PreTaxCostUSD")  # the first present is read
DATE, CURRENCY = "UsageDate", "Currency"
TAG_VALUE = "TagValue"
SERVICE, SUBSCRIPTION, CHARGE_TYPE = "ServiceName", "SubscriptionId", "ChargeType"

_USAGE_CHARGE_TYPES = {"usage", "unusedreservation", "unusedsavingsplan"}
_OTHER_CHARGE_TYPES = {"purchase": "Purchase", "refund": "Credit", "tax": "Tax"}

# Seconds to wait, sent with 429 (and sometimes 503) responses; the largest is honoured.
RETRY_AFTER_HEADERS = (
    "Retry-After",
    "x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after",
    "x-ms-ratelimit-microsoft.costmanagement-entity-retry-after",
    "x-ms-ratelimit-microsoft.costmanagement-tenant-retry-after",
)
MAX_PAGES = 1000        # a runaway guard; a month of daily groups is a few pages
SUBSCRIPTION_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)

CREDENTIALS_HELP = ("DefaultAzureCredential found no credentials: run `az login`, use a managed identity, "
                    "or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET")


def default_credential():
    """The one place credentials come from: DefaultAzureCredential, created on first use."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def charge_category(charge_type: str) -> str:
    """The FOCUS ChargeCategory of an Azure ChargeType value (see the module doc)."""
    name = charge_type.strip().lower()
    if name in _USAGE_CHARGE_TYPES:
        return "Usage"
    if name in _OTHER_CHARGE_TYPES:
        return _OTHER_CHARGE_TYPES[name]
    log.warning("Azure charge type %r has no known FOCUS category; reporting it as Adjustment", charge_type)
    return "Adjustment"


def month_time_period(month: Month) -> tuple[dt.datetime, dt.datetime]:
    """The query's inclusive range: the first and the last second of the month, UTC."""
    start = dt.datetime.combine(month.start, dt.time(), tzinfo=UTC)
    return start, dt.datetime.combine(month.end, dt.time(), tzinfo=UTC) - dt.timedelta(seconds=1)


# ---- throttling and errors ------------------------------------------------------------


def retry_after_seconds(headers) -> float:
    """The longest wait any throttling header asks for, in seconds (0 when none does)."""
    return max([0.0] + [_seconds(headers.get(name)) for name in RETRY_AFTER_HEADERS])


def _seconds(value: str | None) -> float:
    """A retry-after value: seconds, or (Retry-After only) an HTTP date; anything unreadable is 0."""
    text = (value or "").strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return 0.0
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - dt.datetime.now(UTC)).total_seconds()
    return seconds if math.isfinite(seconds) and seconds > 0 else 0.0


def is_transient(exc: BaseException) -> float | None:
    """Seconds to wait before retrying `exc` (0 = no hint), or None if retrying cannot help."""
    from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError, ServiceRequestError,
                                       ServiceResponseError)

    if isinstance(exc, ClientAuthenticationError):
        return None
    if isinstance(exc, HttpResponseError):
        status = exc.status_code
        if status is None:  # the body broke off mid-way
            return 0.0
        if status in (408, 429) or status >= 500:
            return retry_after_seconds(exc.response.headers) if exc.response is not None else 0.0
        return None
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):  # connection errors and timeouts
        return 0.0
    return None


def _service_message(exc) -> str:
    """The service's own error code and message, shortened; never headers (they may carry tokens)."""
    error = getattr(exc, "error", None)
    code, message = getattr(error, "code", None), getattr(error, "message", None)
    response = getattr(exc, "response", None)
    if not message and response is not None:
        try:
            body = json.loads(response.text()).get("error", {})
            code, message = body.get("code"), body.get("message")
        except Exception:  # noqa: BLE001 - an unreadable body only means there is no detail to show
            pass
    if message:
        text = f"{code}: {message}" if code else str(message)
    else:
        text = getattr(exc, "reason", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    text = text.rstrip(".")
    return text if len(text) <= 300 else text[:297] + "..."


# ---- response pages -------------------------------------------------------------------


def _pipeline_response(pipeline_response, _deserialized, _headers):
    """`cls` hook for query.usage: keep the raw response, whose body is parsed exactly here."""
    return pipeline_response


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number this tool accepts")


@dataclass(frozen=True)
class Page:
    """One page of a query result, as parsed JSON (numbers as Decimal)."""

    number: int
    columns: tuple[str, ...]
    rows: list[list[Any]]
    next_link: str | None


@dataclass(frozen=True)
class Group:
    """One result row: a day's cost for one combination of the grouped columns."""

    day: dt.date
    cost: Decimal
    currency: str
    keys: dict[str, str]  # grouped column -> value ("" when Azure has none)


# ---- the connector --------------------------------------------------------------------


@dataclass
class CostManagementQuery(LiveSource):
    """A cluster's month from the Cost Management query API, by subscription, charge type, hub tag and service."""

    # Seams for tests and re-recording; production uses the defaults.
    credential_factory: Callable[[], Any] = field(default=default_credential, repr=False)
    transport: Any = field(default=None, repr=False)

    # -- queries -----------------------------------------------------------------------

    def query_definition(self, month: Month, grouping: list[tuple[str, str]], filters: dict[str, list[str]]):
        """A daily Sum(Cost) query for `month`: `grouping` as (type, name) pairs, `filters` as dimension -> values."""
        from azure.mgmt.costmanagement.models import (QueryAggregation, QueryComparisonExpression, QueryDataset,
                                                      QueryDefinition, QueryFilter, QueryGrouping, QueryTimePeriod)

        conditions = [QueryFilter(dimensions=QueryComparisonExpression(name=name, operator="In",
                                                                       values_property=list(values)))
                      for name, values in filters.items()]
        start, end = month_time_period(month)
        return QueryDefinition(
            type=self.cluster.source.cost_type,
            timeframe="Custom",
            time_period=QueryTimePeriod(from_property=start, to=end),
            dataset=QueryDataset(
                granularity="Daily",
                aggregation={"totalCost": QueryAggregation(name="Cost", function="Sum")},
                grouping=[QueryGrouping(type=kind, name=name) for kind, name in grouping],
                filter=(QueryFilter(and_property=conditions) if len(conditions) > 1  # "and" takes 2 or more
                        else conditions[0] if conditions else None),
            ),
        )

    def _client(self):
        """A CostManagementClient on the DefaultAzureCredential (or the injected one and transport)."""
        from azure.core.pipeline.policies import RetryPolicy
        from azure.mgmt.costmanagement import CostManagementClient

        # One retry policy, ours (with_retries, which reads the costmanagement headers); azure-core's is off
        # so the two cannot multiply.
        options: dict[str, Any] = {"retry_policy": RetryPolicy.no_retries()}
        if self.transport is not None:
            options["transport"] = self.transport
        return CostManagementClient(self.credential_factory(), **options)

    def _groups(self, client, month: Month, grouping: list[tuple[str, str]],
                filters: dict[str, list[str]]) -> Iterator[Group]:
        """Every result row of one query, all pages followed."""
        keys = tuple(TAG_VALUE if kind == "TagKey" else name for kind, name in grouping)
        for page in self._pages(client, self.query_definition(month, grouping, filters)):
            yield from self._read_page(page, month, keys)

    def _pages(self, client, definition) -> Iterator[Page]:
        """The first page from query.usage, the next ones by POSTing the same body to nextLink.

        Each HTTP call, reading its body included, is retried on its own, so a
        throttled page 3 does not fetch pages 1 and 2 again.
        """
        from azure.core.rest import HttpRequest

        scope = self.cluster.source.scope

        def first_page() -> tuple[Any, bytes]:
            response = client.query.usage(scope, definition, stream=True, cls=_pipeline_response)
            return response.http_request, response.http_response.read()

        def next_page(link: str, body: Any) -> bytes:
            request = HttpRequest("POST", link, content=body,
                                  headers={"Content-Type": "application/json", "Accept": "application/json"})
            response = client.send_request(request, stream=True)
            payload = response.read()
            response.raise_for_status()
            return payload

        sent, payload = self._call(first_page)
        page = self._parse_page(payload, 1)
        host, seen = urlparse(sent.url).netloc, set()
        yield page
        while page.next_link:
            link = self._checked_next_link(page, host, seen)
            page = self._parse_page(self._call(lambda: next_page(link, sent.content)), page.number + 1)
            yield page

    def _checked_next_link(self, page: Page, host: str, seen: set[str]) -> str:
        """Follow a nextLink only on the query's own https host (it receives the bearer token), and once."""
        link, parsed = page.next_link or "", urlparse(page.next_link or "")
        if parsed.scheme != "https" or parsed.netloc.lower() != host.lower():
            raise SourceError(self.label, f"page {page.number}: refusing to follow nextLink to "
                                          f"{parsed.scheme}://{parsed.netloc} (expected https://{host})")
        if link in seen:
            raise SourceError(self.label, f"page {page.number}: the service returned the same nextLink twice")
        if page.number >= MAX_PAGES:
            raise SourceError(self.label, f"more than {MAX_PAGES} pages for one query; narrow the scope")
        seen.add(link)
        return link

    def _call(self, call: Callable[[], Any]) -> Any:
        """Run one HTTP call with bounded retries; turn permanent failures into actionable SourceErrors."""
        from azure.core.exceptions import AzureError

        try:
            return self.retry(call, is_transient)
        except AzureError as exc:
            raise self._permanent_error(exc) from None

    def _permanent_error(self, exc) -> SourceError:
        """What to do about a failure that retrying will not fix."""
        from azure.core.exceptions import ClientAuthenticationError

        scope, status, detail = self.cluster.source.scope, getattr(exc, "status_code", None), _service_message(exc)
        if isinstance(exc, ClientAuthenticationError) and status is None:
            return SourceError(self.label, f"{CREDENTIALS_HELP} ({detail})")
        if status == 401:
            return SourceError(self.label, f"Azure rejected the credentials (HTTP 401: {detail}); "
                                           f"{CREDENTIALS_HELP}, in the tenant of {scope}")
        if status == 403:
            return SourceError(self.label, f"access denied to {scope} (HTTP 403: {detail}). The identity needs "
                                           f"the Cost Management Reader role on {scope} (on a billing scope: a "
                                           "billing reader role on that account or profile)")
        if status in (400, 404, 422):
            return SourceError(self.label, f"the query at scope {scope} was rejected (HTTP {status}: {detail}). "
                                           "Check clusters.source.scope: /subscriptions/<subscription id> or "
                                           "/providers/Microsoft.Billing/billingAccounts/<id>[/billingProfiles/<id>]")
        what = f"HTTP {status}" if status else type(exc).__name__
        return SourceError(self.label, f"Cost Management query failed ({what}: {detail})")

    # -- reading responses -------------------------------------------------------------

    def _parse_page(self, payload: bytes, number: int) -> Page:
        """One response body, parsed exactly (numbers as Decimal), its shape checked."""
        if not payload.strip():  # 204 No Content: nothing at this scope
            return Page(number, (), [], None)
        try:
            doc = json.loads(payload, parse_float=Decimal, parse_constant=_reject_constant)
        except ValueError as err:
            raise SourceError(self.label, f"page {number}: the response is not valid JSON ({err})") from None
        props = doc.get("properties") if isinstance(doc, dict) else None
        if not isinstance(props, dict):
            raise SourceError(self.label, f"page {number}: field 'properties' is missing from the response")
        columns, rows, next_link = props.get("columns") or [], props.get("rows") or [], props.get("nextLink")
        if not isinstance(columns, list) or not all(isinstance(c, dict) and isinstance(c.get("name"), str)
                                                    for c in columns):
            raise SourceError(self.label, f"page {number}: field 'columns' is not a list of named columns")
        if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == len(columns) for r in rows):
            raise SourceError(self.label, f"page {number}: field 'rows' does not match the {len(columns)} columns")
        if next_link is not None and not isinstance(next_link, str):
            raise SourceError(self.label, f"page {number}: field 'nextLink' is not a URL: {next_link!r}")
        return Page(number, tuple(c["name"] for c in columns), rows, next_link or None)

    def _read_page(self, page: Page, month: Month, keys: tuple[str, ...]) -> Iterator[Group]:
        """The page's rows as Groups, every column found by name and every value checked."""
        if not page.rows:
            return
        index = {name.lower(): i for i, name in enumerate(page.columns)}

        def column(*names: str) -> int:
            for name in names:
                if name.lower() in index:
                    return index[name.lower()]
            wanted = repr(names[0]) if len(names) == 1 else f"one of {list(names)}"
            raise SourceError(self.label, f"page {page.number}: column {wanted} is missing from the response "
                                          f"(columns: {list(page.columns)})")

        cost_at, date_at, currency_at = column(*COST_COLUMNS), column(DATE), column(CURRENCY)
        key_at = {key: column(key) for key in keys}
        for n, row in enumerate(page.rows):
            where = f"page {page.number}, row {n}"
            try:
                cost = to_decimal(row[cost_at])
            except ValueError:
                raise SourceError(self.label, f"{where}: column {page.columns[cost_at]!r} is not a number: "
                                              f"{row[cost_at]!r}") from None
            currency = row[currency_at]
            if not (isinstance(currency, str) and len(currency) == 3 and currency.isalpha() and currency.isupper()):
                raise SourceError(self.label, f"{where}: column 'Currency' is not a currency code: {currency!r}")
            values = {key: row[i] if row[i] is not None else "" for key, i in key_at.items()}
            for key, value in values.items():
                if not isinstance(value, str):
                    raise SourceError(self.label, f"{where}: column {key!r} is not text: {value!r}")
            yield Group(self._usage_day(row[date_at], month, where), cost, currency, values)

    def _usage_day(self, value: Any, month: Month, where: str) -> dt.date:
        """UsageDate is a number YYYYMMDD within the queried month."""
        text = str(value)
        try:
            if isinstance(value, bool) or not (text.isdigit() and len(text) == 8):
                raise ValueError(text)
            day = dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
        except ValueError:
            raise SourceError(self.label, f"{where}: column 'UsageDate' is not a date YYYYMMDD: {value!r}") from None
        if not month.start <= day < month.end:
            raise SourceError(self.label, f"{where}: column 'UsageDate' {value!r} is outside {month}")
        return day

    # -- the month ---------------------------------------------------------------------

    def _subscriptions(self) -> list[str]:
        """The cluster's sub_accounts, which for Azure must be subscription ids."""
        for sub in self.cluster.sub_accounts:
            if not SUBSCRIPTION_ID.match(sub):
                raise SourceError(self.label, f"clusters ({self.cluster.id}).sub_accounts: {sub!r} is not an Azure "
                                              "subscription id (a GUID like 00000000-0000-0000-0000-000000000000)")
        return list(self.cluster.sub_accounts)

    def _discover(self, client, month: Month) -> dict[tuple[str, str], dict[str, Decimal]]:
        """Totals per (subscription, charge type) and currency."""
        subscriptions = self._subscriptions()
        wanted = {s.lower() for s in subscriptions}
        totals: dict[tuple[str, str], dict[str, Decimal]] = {}
        grouping = [("Dimension", SUBSCRIPTION), ("Dimension", CHARGE_TYPE)]
        for g in self._groups(client, month, grouping, {SUBSCRIPTION: subscriptions}):
            subscription, charge_type = g.keys[SUBSCRIPTION], g.keys[CHARGE_TYPE]
            if subscription.lower() not in wanted:
                raise SourceError(self.label, f"column 'SubscriptionId' names {subscription!r}, which the filter "
                                              f"excluded (sub_accounts: {subscriptions})")
            by_currency = totals.setdefault((subscription, charge_type), {})
            by_currency[g.currency] = by_currency.get(g.currency, Decimal(0)) + g.cost
        return totals

    def fetch_records(self, month: Month) -> list[dict[str, Any]]:
        """The month's rows: discovery, then one reconciled detail query per (subscription, charge type)."""
        rows: list[dict[str, Any]] = []
        grouping = [("TagKey", self.cluster.hub_tag), ("Dimension", SERVICE)]
        with self._client() as client:
            for (subscription, charge_type), expected in self._discover(client, month).items():
                category = charge_category(charge_type)
                filters = {SUBSCRIPTION: [subscription], CHARGE_TYPE: [charge_type]}
                found: dict[str, Decimal] = {}
                for g in self._groups(client, month, grouping, filters):
                    found[g.currency] = found.get(g.currency, Decimal(0)) + g.cost
                    if g.cost != 0:
                        rows.append(self._row(month, subscription, category, g))
                self.check_parts_add_up(f"subscription {subscription} charge type {charge_type!r}", expected, found)
        return rows

    def _row(self, month: Month, subscription: str, category: str, g: Group) -> dict[str, Any]:
        """One normalized record (RECORD_SCHEMA names) from a detail group."""
        return self.record(month, provider=PROVIDER_NAME, sub_account=subscription.lower(), category=category,
                           service=g.keys[SERVICE], cost=g.cost, currency=g.currency, hub=g.keys[TAG_VALUE],
                           day=dt.datetime.combine(g.day, dt.time(), tzinfo=UTC), estimated=month_is_open(month))

    def probe(self, month: Month) -> tuple[str, list[str]]:
        """One query grouped by the hub tag: proves access, shows what is there."""
        tag = self.cluster.hub_tag
        sums: dict[str, Decimal] = {}
        values: set[str] = set()
        groups = 0
        with self._client() as client:
            for g in self._groups(client, month, [("TagKey", tag)], {SUBSCRIPTION: self._subscriptions()}):
                groups += 1
                sums[g.currency] = sums.get(g.currency, Decimal(0)) + g.cost
                values.update({g.keys[TAG_VALUE]} - {""})
        amount = ", ".join(f"{round_money(v, c)} {c}" for c, v in sorted(sums.items())) or "no cost"
        detail = (f"Cost Management {month} at {self.cluster.source.scope}: {groups} row(s), {amount} in "
                  f"subscription(s) {', '.join(self.cluster.sub_accounts)}; {len(values)} value(s) of tag {tag!r}")
        warnings = []
        if not groups:
            warnings.append(f"no cost found in {month} for these subscriptions")
        elif not values:
            warnings.append(f"no cost in {month} carries the tag {tag!r}: the hubs' resources (node pools, disks) "
                            "are probably not tagged, or tag inheritance is off in Cost Management settings; all "
                            "cost would be reported as support")
        if len(sums) > 1:
            warnings.append(f"more than one currency: {sorted(sums)}")
        if month_is_open(month):
            warnings.append(f"{month} has not ended: its figures are not final")
        return detail, warnings
