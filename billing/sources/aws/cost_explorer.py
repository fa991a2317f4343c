"""AWS Cost Explorer: a cluster's month by account, record type, hub tag and service.

`get_cost_and_usage` accepts at most two GroupBy keys, but a correct record
needs four: the hub tag, the service, the linked account (SubAccountId) and
the record type (credits, refunds and tax must stay visible as such). So the
month is read in two steps:

1. One discovery query grouped by LINKED_ACCOUNT and RECORD_TYPE, filtered to
   the cluster's accounts. It lists which (account, record type) pairs have
   cost and their totals.
2. For each pair, one query grouped by the hub tag and SERVICE, filtered to
   exactly that account and record type.

Every cost line has exactly one account and one record type, so the filters
of step 2 partition the month: each dollar appears exactly once. The sum of
each step-2 query is checked against its step-1 total. Cost: 1 + (accounts x
record types) paid calls (plus extra pages); typically 3-5 per cluster and
month. Pairs whose discovery total is zero are still read, since their
groups may offset each other across hubs.

A group key "2i2c:hub-name$staging" gives Tags {"2i2c:hub-name": "staging"};
"2i2c:hub-name$" (nothing after "$") is untagged cost and gives Tags {}.
`Estimated: true` marks the rows x_Estimated. The connector does not refuse
such a month: the pipeline does, when finalizing (unless --draft or
--allow-estimated), so previews of the running month still work.

Record types become FOCUS charge categories by `common.charge_category`.

IAM permission: ce:GetCostAndUsage (in the payer/management account, or a
member account for its own cost).
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable, Iterator

from billing.errors import SourceError
from billing.money import to_decimal
from billing.months import Month
from billing.sources.aws import common
from billing.sources.aws.common import PROVIDER_NAME, UTC, Explanation, call_aws, charge_category
from billing.sources.base import LiveSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Group:
    """One group of a get_cost_and_usage answer, validated."""

    period_start: dt.datetime
    estimated: bool
    keys: tuple[str, ...]
    amount: Decimal
    unit: str


def _dimension(key: str, values: Iterable[str]) -> dict:
    return {"Dimensions": {"Key": key, "Values": list(values)}}


class CostExplorer(LiveSource):
    """A cluster's month from Cost Explorer, by account, record type, hub tag and service."""

    def _client(self):
        return common.make_client("ce", self.cluster.source.region)

    # -- calls ------------------------------------------------------------------------

    def _explain(self, month: Month) -> Explanation:
        tag = self.cluster.hub_tag

        def explain(code: str, message: str) -> str | SourceError | None:
            if code == "AccessDeniedException":
                return ("Cost Explorer denied access: the credentials need ce:GetCostAndUsage, and Cost "
                        "Explorer must be enabled; query from the payer (management) account to see member "
                        f"accounts {list(self.cluster.sub_accounts)}")
            if code == "DataUnavailableException":
                return (f"Cost Explorer has no data for {month}: it is not enabled yet for this account (data "
                        "appears about a day after enabling) or the month is older than its retained history")
            if code == "ValidationException":
                hint = (f"; check that {tag!r} is an activated cost allocation tag in the payer account"
                        if "tag" in message.lower() else "")
                return f"Cost Explorer rejected the query: {message}{hint}"
            if code in ("RequestChangedException", "InvalidNextTokenException"):
                return SourceError(self.label, f"Cost Explorer data changed while paging ({code}); fetch again",
                                   transient=True)
            if code == "BillExpirationException":
                return f"Cost Explorer cannot return {month}: {message}"
            return None
        return explain

    def _pages(self, client, month: Month, group_by: list[dict], filter_: dict) -> Iterator[dict]:
        """Every page of one get_cost_and_usage query."""
        params = {
            "TimePeriod": {"Start": month.start.isoformat(), "End": month.end.isoformat()},
            "Granularity": "MONTHLY",
            "Metrics": [self.cluster.source.metric],
            "GroupBy": group_by,
            "Filter": filter_,
        }
        explain, seen = self._explain(month), set()
        token = None
        while True:
            page_params = dict(params, NextPageToken=token) if token else params
            page = call_aws(self.label, lambda: client.get_cost_and_usage(**page_params),
                            explain=explain, sleep=self.sleep)
            yield page
            token = page.get("NextPageToken")
            if not token:
                return
            if token in seen:
                raise SourceError(self.label, "Cost Explorer returned the same NextPageToken twice; stopping")
            seen.add(token)

    def _groups(self, page: dict, n_keys: int) -> Iterator[_Group]:
        """The page's groups, validated; a malformed field raises SourceError naming it."""
        results = page.get("ResultsByTime")
        if not isinstance(results, list):
            raise self._malformed("ResultsByTime", "is missing")
        metric = self.cluster.source.metric
        for i, result in enumerate(results):
            path = f"ResultsByTime[{i}]"
            try:
                start = dt.datetime.combine(dt.date.fromisoformat(result["TimePeriod"]["Start"]), dt.time(), UTC)
            except (KeyError, TypeError, ValueError):
                raise self._malformed(f"{path}.TimePeriod.Start", "is missing or not a date") from None
            for j, group in enumerate(result.get("Groups") or []):
                gpath = f"{path}.Groups[{j}]"
                keys = group.get("Keys")
                if not isinstance(keys, list) or len(keys) != n_keys:
                    raise self._malformed(f"{gpath}.Keys", f"should hold {n_keys} keys, got {keys!r}")
                value = (group.get("Metrics") or {}).get(metric)
                if not isinstance(value, dict):
                    raise self._malformed(f"{gpath}.Metrics.{metric}", "is missing")
                for name in ("Amount", "Unit"):
                    if not value.get(name):
                        raise self._malformed(f"{gpath}.Metrics.{metric}.{name}", "is missing")
                try:
                    amount = to_decimal(value["Amount"])
                except ValueError:
                    raise self._malformed(f"{gpath}.Metrics.{metric}.Amount",
                                          f"is not a number: {value['Amount']!r}") from None
                yield _Group(start, bool(result.get("Estimated", False)), tuple(keys), amount, value["Unit"])

    def _malformed(self, field: str, problem: str) -> SourceError:
        return SourceError(self.label, f"malformed Cost Explorer response: field {field} {problem}")

    def _tags(self, key: str) -> dict[str, str]:
        prefix = f"{self.cluster.hub_tag}$"
        if not key.startswith(prefix):
            raise self._malformed("Keys[0]", f"should start with {prefix!r}, got {key!r}")
        value = key[len(prefix):]
        return {self.cluster.hub_tag: value} if value else {}

    # -- the month ---------------------------------------------------------------------

    def _discover(self, client, month: Month) -> dict[tuple[str, str], dict[str, Decimal]]:
        """Totals per (account, record type) and currency, in the order Cost Explorer gives them."""
        accounts = self.cluster.sub_accounts
        totals: dict[tuple[str, str], dict[str, Decimal]] = {}
        group_by = [{"Type": "DIMENSION", "Key": "LINKED_ACCOUNT"}, {"Type": "DIMENSION", "Key": "RECORD_TYPE"}]
        for page in self._pages(client, month, group_by, _dimension("LINKED_ACCOUNT", accounts)):
            for g in self._groups(page, 2):
                account, record_type = g.keys
                if account not in accounts:
                    raise self._malformed("Keys[0]", f"names account {account!r}, which the filter excluded")
                by_unit = totals.setdefault((account, record_type), {})
                by_unit[g.unit] = by_unit.get(g.unit, Decimal(0)) + g.amount
        return totals

    def fetch_records(self, month: Month) -> list[dict[str, Any]]:
        client = self._client()
        rows: list[dict[str, Any]] = []
        group_by = [{"Type": "TAG", "Key": self.cluster.hub_tag}, {"Type": "DIMENSION", "Key": "SERVICE"}]
        for (account, record_type), expected in self._discover(client, month).items():
            category = charge_category(record_type)
            filter_ = {"And": [_dimension("LINKED_ACCOUNT", [account]), _dimension("RECORD_TYPE", [record_type])]}
            found: dict[str, Decimal] = {}
            for page in self._pages(client, month, group_by, filter_):
                for g in self._groups(page, 2):
                    found[g.unit] = found.get(g.unit, Decimal(0)) + g.amount
                    if g.amount != 0:
                        rows.append(self._row(month, account, category, g))
            self.check_parts_add_up(f"account {account} record type {record_type!r}", expected, found)
        return rows

    def _row(self, month: Month, account: str, category: str, g: _Group) -> dict[str, Any]:
        return self.record(month, provider=PROVIDER_NAME, sub_account=account, category=category, service=g.keys[1],
                           cost=g.amount, currency=g.unit, hub=self._tags(g.keys[0]).get(self.cluster.hub_tag),
                           day=g.period_start, estimated=g.estimated)

    def probe(self, month: Month) -> tuple[str, list[str]]:
        """One query grouped by the hub tag: proves access, shows what is there."""
        tag = self.cluster.hub_tag
        sums: dict[str, Decimal] = {}
        values: set[str] = set()
        groups = 0
        estimated = False
        for page in self._pages(self._client(), month, [{"Type": "TAG", "Key": tag}],
                                _dimension("LINKED_ACCOUNT", self.cluster.sub_accounts)):
            for g in self._groups(page, 1):
                groups += 1
                sums[g.unit] = sums.get(g.unit, Decimal(0)) + g.amount
                values.update(self._tags(g.keys[0]).values())
                estimated = estimated or g.estimated
        amount = ", ".join(f"{v} {u}" for u, v in sorted(sums.items())) or "no cost"
        detail = (f"Cost Explorer {month}: {groups} group(s), {amount} in account(s) "
                  f"{', '.join(self.cluster.sub_accounts)}; {len(values)} value(s) of tag {tag!r}")
        warnings = []
        if not groups:
            warnings.append(f"no cost found in {month} for these accounts")
        elif not values:
            warnings.append(f"no cost in {month} carries the tag {tag!r}: it is probably not activated as a cost "
                            "allocation tag in the payer account (Billing console, Cost allocation tags), or the "
                            "hubs' resources are not tagged; all cost would be reported as support")
        if estimated:
            warnings.append(f"Cost Explorer marks {month} as estimated (not final)")
        return detail, warnings
