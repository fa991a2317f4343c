"""Attribute: every cost group goes to a hub, a community, or the unattributed bucket.

Rules, in order, for each aggregated cost group:
1. Its (provider, sub-account) names a cluster; otherwise it is unattributed.
2. A hub that owns the whole sub-account, or whose tag value the group
   carries, gets it directly ("direct").
3. A tag value that names no hub: on a dedicated cluster the cost still
   belongs to the cluster's community; on a shared cluster it is unattributed
   (someone must say whose hub that is).
4. Untagged cost, or cost tagged with a system namespace such as kube-system
   (overhead: core nodes, networking, storage, tax, credits):
   on a dedicated cluster it goes to the community ("cluster"); on a shared
   cluster it is split among the cluster's hubs by the configured rule
   ("shared"): usage measure, even, or each hub's direct cost. When every
   weight is zero the split falls back to even, and says so.
   A cluster none of whose rows carries its hub tag never gets here: that is
   a wrong hub_tag, not overhead, and ingest refuses the month
   (`billing.ingest.hub_tag_problem`) unless the cluster says untagged_ok.
Corrections (FOCUS ChargeClass "Correction") follow the same rules but
are kept apart from the month's own cost, with the month they correct: a
shared cluster's overhead correction is a pool of its own, split among the
hubs active in the corrected month, by that month's usage when the caller
gives it (`corrected_usage`), else by this month's weights, and the note says
which. Corrections never count as a hub's own cost in the `direct_cost` rule.
Splits use the largest-remainder method, so parts add up to the whole
exactly. `reconcile` then checks input = attributed + unattributed per
provider and billing account, to the last digit, and fails loudly if not.
"""
from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Mapping

from billing.config import Cluster, Organization
from billing.errors import ReconciliationError
from billing.ingest import CostGroup, IngestedMonth
from billing.money import ZERO, allocate
from billing.months import Month
from billing.usage import MonthUsage

UNATTRIBUTED = "unattributed"
_CONTROL_PLANE = re.compile(r"kubernetes|\beks\b|\baks\b|\bgke\b", re.IGNORECASE)


@dataclass(frozen=True)
class AttributedCost:
    provider: str
    billing_account: str
    cluster: str | None
    hub: str | None
    community: str | None
    component: str
    allocation: str          # direct, shared, cluster, or unattributed
    currency: str
    cost: Decimal            # exact
    note: str = ""           # why: the split rule and share, or why it is unattributed
    corrects: str | None = None   # a correction (FOCUS ChargeClass) of this earlier month, YYYY-MM


@dataclass(frozen=True)
class ReconciliationRow:
    provider: str
    billing_account: str
    currency: str
    input_total: Decimal
    attributed: Decimal
    unattributed: Decimal

    @property
    def difference(self) -> Decimal:
        return self.input_total - self.attributed - self.unattributed


def component_of(group: CostGroup) -> str:
    """compute, storage, networking, core, other; tax and credits keep their own component."""
    if group.charge_category == "Tax":
        return "tax"
    if group.charge_category == "Credit":
        return "credit"
    if _CONTROL_PLANE.search(group.service_name):
        return "core"
    return {"Compute": "compute", "Storage": "storage", "Networking": "networking"}.get(group.service_category, "other")


def _active_hubs(org: Organization, cluster: Cluster, month: str) -> list:
    return [h for h in org.hubs_of_cluster(cluster.id) if org.is_active(org.community(h.community), month)]


def split_weights(cluster: Cluster, hubs: list, usage: MonthUsage,
                  direct: dict[str, Decimal], period: str = "") -> tuple[list[Decimal], str]:
    """The weights of a shared cluster's hubs and a sentence saying how they were chosen.

    `period` names the month the usage or cost is from when that is not
    the month being split (" in May 2022").
    """
    rule = cluster.split.rule if cluster.split else "even"
    if rule == "usage":
        weights = [usage.by_hub.get(h.id, ZERO) for h in hubs]
        how = f"by {usage.measure}{period}"
    elif rule == "direct_cost":
        weights = [max(direct.get(h.id, ZERO), ZERO) for h in hubs]
        how = f"by each hub's own cloud cost{period}"
    else:
        weights = [Decimal(1)] * len(hubs)
        how = "evenly"
    if sum(weights, ZERO) == 0:  # the configured fallback; "even" is the only one so far
        weights = [Decimal(1)] * len(hubs)
        how = f"evenly (fallback: no hub had any weight {how})"
    return weights, how


def attribute(org: Organization, ingested: IngestedMonth, usage: MonthUsage,
              corrected_usage: Mapping[str, MonthUsage] | None = None) -> list[AttributedCost]:
    """Attribute every cost group; the result's costs add up to the input exactly.

    `corrected_usage` is the usage of the months that corrections correct
    (`ingested.corrected_months`), to split a shared cluster's overhead
    correction as the corrected month was split; without it (or when it has
    no usage row at all), this month's usage is used, and the note says so.
    """
    month = str(ingested.month)
    clusters = {(c.provider, sub): c for c in org.clusters for sub in c.sub_accounts}
    hubs_by_sub = {(h.cluster, h.sub_account): h for h in org.hubs if h.sub_account}
    hubs_by_tag = {(h.cluster, h.match_value): h for h in org.hubs if h.sub_account is None}
    result: list[AttributedCost] = []
    pools: dict[tuple, Decimal] = defaultdict(lambda: ZERO)      # shared overhead to split
    direct: dict[tuple[str, str, str], Decimal] = defaultdict(lambda: ZERO)  # (cluster, currency, hub) -> cost

    for g in ingested.groups:
        component = component_of(g)
        cluster = clusters.get((g.provider, g.sub_account))
        base = dict(provider=g.provider, billing_account=g.billing_account, component=component, currency=g.currency,
                    corrects=g.corrects)
        if cluster is None:
            why = (f"sub-account {g.sub_account!r} of {g.provider} billing account {g.billing_account!r} "
                   "belongs to no configured cluster") if g.sub_account else "the row has no sub-account"
            result.append(AttributedCost(**base, cluster=None, hub=None, community=None, allocation=UNATTRIBUTED,
                                         cost=g.cost, note=why))
            continue
        tag = ingested.tag(g, cluster.hub_tag)
        if tag in cluster.overhead_tag_values:
            tag = None  # a system namespace: the cluster's own overhead
        hub = hubs_by_sub.get((cluster.id, g.sub_account)) or (hubs_by_tag.get((cluster.id, tag)) if tag else None)
        if hub is not None:
            result.append(AttributedCost(**base, cluster=cluster.id, hub=hub.id, community=hub.community,
                                         allocation="direct", cost=g.cost))
            if g.corrects is None:
                direct[(cluster.id, g.currency, hub.id)] += g.cost
        elif cluster.tenancy == "dedicated":
            note = f"tag {cluster.hub_tag}={tag!r} names no hub; cluster is dedicated" if tag else ""
            result.append(AttributedCost(**base, cluster=cluster.id, hub=None, community=cluster.community,
                                         allocation="cluster", cost=g.cost, note=note))
        elif tag:
            result.append(AttributedCost(**base, cluster=cluster.id, hub=None, community=None,
                                         allocation=UNATTRIBUTED, cost=g.cost,
                                         note=f"tag {cluster.hub_tag}={tag!r} names no hub on shared cluster {cluster.id!r}"))
        else:
            pools[(cluster.id, g.provider, g.billing_account, g.currency, component, g.corrects or "")] += g.cost

    for (cluster_id, provider, account, currency, component, corrects), total in sorted(pools.items()):
        hub_costs = {h: c for (cl, cur, h), c in direct.items() if cl == cluster_id and cur == currency}
        cluster = org.cluster(cluster_id)
        if corrects:
            result.extend(split_shared_correction(org, cluster, provider, account, currency, component, total, usage,
                                                  hub_costs, month, corrects, corrected_usage or {}))
        else:
            result.extend(split_shared_cost(org, cluster, provider, account, currency, component, total,
                                            usage, hub_costs, month))
    return [_unless_inactive(org, a, month) for a in result]


def _unless_inactive(org: Organization, cost: AttributedCost, month: str) -> AttributedCost:
    """Cost of a community that is not invoiced this month must not vanish: it goes to unattributed, saying why."""
    if cost.community is None or org.is_active(org.community(cost.community), month):
        return cost
    c = org.community(cost.community)
    return dataclasses.replace(cost, allocation=UNATTRIBUTED, note=(
        f"community {c.id!r} is not active in {month} (active_from {c.active_from or '-'}, "
        f"active_until {c.active_until or '-'}) but hub {cost.hub or '(cluster overhead)'} has cost"))


def split_shared_cost(org, cluster, provider, account, currency, component, total, usage, direct, month,
                      corrects: str | None = None, period: str = ""):
    """Split one pool of a shared cluster's overhead among the hubs active in `month`.

    For a correction, `month` is the corrected month, `corrects` says so and
    `period` says whose weights were used (" in May 2022").
    """
    base = dict(provider=provider, billing_account=account, component=component, currency=currency,
                corrects=corrects)
    about = f"correction to {Month.parse(corrects).label()}: " if corrects else ""
    hubs = _active_hubs(org, cluster, month)
    if not hubs:
        return [AttributedCost(**base, cluster=cluster.id, hub=None, community=None, allocation=UNATTRIBUTED,
                               cost=total, note=f"{about}shared cluster {cluster.id!r} has no active hub in {month}")]
    weights, how = split_weights(cluster, hubs, usage, direct, period)
    weight_sum = sum(weights, ZERO)
    parts = allocate(total, weights)
    return [AttributedCost(**base, cluster=cluster.id, hub=h.id, community=h.community, allocation="shared", cost=p,
                           note=f"{about}split {how}: {_percent(w, weight_sum)} of {cluster.id} overhead")
            for h, w, p in zip(hubs, weights, parts)]


def split_shared_correction(org, cluster, provider, account, currency, component, total, usage, direct, month,
                            corrects: str, corrected_usage: Mapping[str, MonthUsage]):
    """Split a shared cluster's overhead correction among the hubs active in the month it corrects.

    Weighted by that month's usage when known (rule `usage`; a month without
    a single usage row is not known), else by this month's usage, or by this
    month's direct cost (rule `direct_cost`: the corrected month's cost is
    not at hand); the note names the month whose weights were used.
    """
    rule = cluster.split.rule if cluster.split else "even"
    if rule == "usage" and corrects in corrected_usage and corrected_usage[corrects].by_hub:
        weights_month, usage = corrects, corrected_usage[corrects]
    else:
        weights_month = month
    return split_shared_cost(org, cluster, provider, account, currency, component, total, usage, direct,
                             corrects, corrects=corrects, period=f" in {Month.parse(weights_month).label()}")


def _percent(weight: Decimal, total: Decimal) -> str:
    return f"{(weight * 100 / total).quantize(Decimal('0.01'))}%"


def reconcile(ingested: IngestedMonth, attributed: list[AttributedCost]) -> list[ReconciliationRow]:
    """Input total = attributed + unattributed, per provider, billing account and currency; raises if not."""
    keys = lambda provider, account, currency: (provider, account, currency)  # noqa: E731
    inputs: dict[tuple, Decimal] = defaultdict(lambda: ZERO)
    done: dict[tuple, Decimal] = defaultdict(lambda: ZERO)
    left: dict[tuple, Decimal] = defaultdict(lambda: ZERO)
    for g in ingested.groups:
        inputs[keys(g.provider, g.billing_account, g.currency)] += g.cost
    for a in attributed:
        bucket = left if a.allocation == UNATTRIBUTED else done
        bucket[keys(a.provider, a.billing_account, a.currency)] += a.cost
    rows = [ReconciliationRow(*k, inputs[k], done[k], left[k]) for k in sorted(set(inputs) | set(done) | set(left))]
    wrong = [r for r in rows if r.difference != 0]
    if wrong:
        raise ReconciliationError(f"{ingested.month}: attributed cost does not add up to the input: " + "; ".join(
            f"{r.provider} {r.billing_account} {r.currency}: input {r.input_total}, attributed {r.attributed}, "
            f"unattributed {r.unattributed}, difference {r.difference}" for r in wrong))
    return rows
