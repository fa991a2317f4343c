"""Price: apply each community's plan to its month, giving exact charges.

A plan is a list of pricing models applied in order; each sees the charges
made before it (so an uplift or a subsidy can build on them). Cloud costs in
another currency than the community's are converted with a configured rate,
or the run stops with an error naming the community, currency and month.
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from decimal import Decimal

from billing.attribution import UNATTRIBUTED, AttributedCost
from billing.config import Community, Organization
from billing.errors import InputError
from billing.money import ZERO
from billing.months import Month
from billing.usage import MonthUsage
from pricing_models import Charge, CloudCost, PricingContext, build_model


def cloud_costs_of(org: Organization, community: Community, month: Month,
                   attributed: list[AttributedCost]) -> tuple[CloudCost, ...]:
    """The community's attributed costs, merged per (cluster, hub, component, allocation, corrected month), in
    its currency; the month's own costs first, then the corrections, oldest corrected month first."""
    merged: dict[tuple, Decimal] = defaultdict(lambda: ZERO)
    notes: dict[tuple, str] = {}
    for a in attributed:
        if a.community != community.id or a.allocation == UNATTRIBUTED:
            continue
        amount = a.cost
        if a.currency != community.currency:
            rate = org.rate(str(month), a.currency, community.currency)
            if rate is None:
                raise InputError(
                    f"community {community.id!r} is invoiced in {community.currency} but has {a.currency} cloud cost "
                    f"in {month}; add exchange_rates: [{{month: '{month}', from: {a.currency}, to: "
                    f"{community.currency}, rate: '...'}}] to the configuration")
            amount = amount * rate
        key = (a.cluster, a.hub, a.component, a.allocation, a.corrects)
        merged[key] += amount
        if a.note:
            notes[key] = a.note
    order = {"direct": 0, "shared": 1, "cluster": 2}
    keys = sorted(merged, key=lambda k: (k[4] or "", k[1] is None, k[1] or "", order.get(k[3], 9), k[0], k[2]))
    return tuple(CloudCost(k[0], k[1], k[2], k[3], merged[k], notes.get(k, ""), k[4]) for k in keys)


def price_community(org: Organization, community: Community, month: Month, attributed: list[AttributedCost],
                    usage: MonthUsage) -> list[Charge]:
    """Apply the community's plan; every charge is tagged with the community it concerns."""
    plan = org.plan(community.pricing_plan)
    hubs = [h.id for h in org.hubs if h.community == community.id]
    ctx = PricingContext(
        month=month, community=community,
        funder=org.funder(community.funder) if community.funder else None,
        currency=community.currency,
        cloud=cloud_costs_of(org, community, month, attributed),
        mau={h: usage.mau.get(h, 0) for h in hubs},
        dedicated=any(c.tenancy == "dedicated" and c.community == community.id for c in org.clusters),
    )
    charges: list[Charge] = []
    for i, spec in enumerate(plan.charges):
        model = build_model(spec.model, spec.params)
        try:
            new = model.charges(ctx, tuple(charges))
        except ValueError as err:
            raise InputError(f"pricing_plans ({plan.id}).charges[{i}] ({spec.model}) for community "
                             f"{community.id!r}: {err}") from None
        charges.extend(dataclasses.replace(c, community=community.id) for c in new)
    return charges


def price_month(org: Organization, month: Month, attributed: list[AttributedCost],
                usage: MonthUsage) -> dict[str, list[Charge]]:
    """Charges of every community active in the month, by community id (in configuration order)."""
    return {c.id: price_community(org, c, month, attributed, usage)
            for c in org.communities if org.is_active(c, str(month))}
