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
from typing import Iterable

from billing.attribution import UNATTRIBUTED, AttributedCost
from billing.config import Community, Organization
from billing.errors import InputError
from billing.money import ZERO, format_money
from billing.months import Month
from billing.usage import MonthUsage
from pricing_models import Charge, CloudCost, PricingContext, build_model
from pricing_models.base import PricingState, rounded_sum, scope_sum


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
                    usage: MonthUsage, state: PricingState | None = None) -> list[Charge]:
    """Apply the plan in force for the month, then the community's prepaid credit; every charge is tagged with
    the community it concerns."""
    plan = org.plan_of(community, month)
    state = state if state is not None else PricingState()
    hubs = org.hubs_of_community(community.id)
    days, total = org.active_days(community, month)
    ctx = PricingContext(
        month=month, community=community,
        funder=org.funder(community.funder) if community.funder else None,
        currency=community.currency,
        cloud=cloud_costs_of(org, community, month, attributed),
        mau={h.id: usage.billable_mau(h) for h in hubs},
        dedicated=any(c.tenancy == "dedicated" and c.community == community.id for c in org.clusters),
        active_days=days, days_in_month=total, prorate=plan.prorate, state=state,
        last_month=community.last_day < month.end,
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
    charges += [dataclasses.replace(c, community=community.id) for c in prepaid_draws(community, month, charges, state)]
    return charges


def prepaid_draws(community: Community, month: Month, charges: list[Charge], state: PricingState) -> list[Charge]:
    """Draw on the community's prepaid balances, oldest first, never beyond what it owes in their scope."""
    owed = rounded_sum(charges)
    draws = []
    for prepaid in community.prepaid:
        if prepaid.start > str(month) or owed <= 0:
            continue
        balance = prepaid.amount - state.prepaid_drawn.get(prepaid.id, ZERO)
        draw = min(balance, scope_sum(charges, prepaid.applies_to), owed)
        if draw <= 0:
            continue
        owed -= draw
        left = balance - draw
        draws.append(Charge("prepaid", f"Prepaid credit {prepaid.id}: {format_money(draw, community.currency)} "
                                       f"drawn, {format_money(left, community.currency)} remaining",
                            -draw, community.currency,
                            details=(("prepaid", prepaid.id), ("balance_before", str(balance)),
                                     ("balance_after", str(left)))))
    return draws


def one_off_charges(org: Organization, month: Month, recorded=()) -> dict[tuple[str, str], list[Charge]]:
    """One-off charges and credits of the month, from the configuration and recorded with `billing adjust`,
    by billed party: each its own line, a credit never a negative fee."""
    by_party: dict[tuple[str, str], list[Charge]] = {}
    for one in list(org.one_offs) + list(recorded):
        if one.month != str(month):
            continue
        kind, _, party_id = one.party.partition(":")
        entity = org.community(party_id) if kind == "community" else org.funder(party_id)
        sign = 1 if one.kind == "charge" else -1
        by_party.setdefault((kind, party_id), []).append(Charge(
            "one_off_charge" if sign > 0 else "one_off_credit", one.description, sign * one.amount,
            entity.currency, quantity=Decimal(1), unit_price=sign * one.amount,
            community=party_id if kind == "community" else None,
            bill_to=None if kind == "community" else party_id))
    return by_party


def price_month(org: Organization, month: Month, attributed: list[AttributedCost], usage: MonthUsage,
                state: PricingState | None = None) -> dict[str, list[Charge]]:
    """Charges of every community active in the month, by community id (in configuration order).

    `state` says what earlier months used up (awards, prepaid balances, the
    year's charges); it is updated as each community is priced, so two
    communities drawing on one award share it in configuration order.
    """
    state = state if state is not None else PricingState()
    by_community: dict[str, list[AttributedCost]] = defaultdict(list)
    for a in attributed:
        by_community[a.community].append(a)
    result = {}
    for c in org.communities:
        if not org.is_active(c, str(month)):
            continue
        result[c.id] = charges = price_community(org, c, month, by_community[c.id], usage, state)
        record_draws(state, charges)
    return result


def record_draws(state: PricingState, charges: Iterable[Charge]) -> None:
    """What these charges draw from awards and prepaid balances, into the state."""
    for ch in charges:
        details = dict(ch.details)
        if ch.kind == "subsidy" and ch.bill_to is not None and details.get("award"):
            state.award_drawn[details["award"]] = state.award_drawn.get(details["award"], ZERO) + ch.rounded
        elif ch.kind == "prepaid":
            state.prepaid_drawn[details["prepaid"]] = state.prepaid_drawn.get(details["prepaid"], ZERO) - ch.rounded


def state_before(documents: Iterable, month: Month) -> PricingState:
    """What the finalized documents of earlier months used up (credit notes count negatively, so a credited
    invoice and its replacement count once): award draws, prepaid draws, each community's charges this year."""
    state = PricingState()
    for doc in documents:
        if doc.status == "draft" or doc.month >= str(month):
            continue
        same_year = doc.month[:4] == str(month)[:4]
        for line in doc.lines:
            details = dict(line.details)
            if doc.party_kind == "funder" and line.kind == "subsidy" and details.get("award"):
                state.award_drawn[details["award"]] = state.award_drawn.get(details["award"], ZERO) + line.amount
            elif line.kind == "prepaid" and details.get("prepaid"):
                state.prepaid_drawn[details["prepaid"]] = state.prepaid_drawn.get(details["prepaid"], ZERO) - line.amount
            if same_year and doc.party_kind == "community":
                key = (doc.party_id, line.kind)
                state.year_charges[key] = state.year_charges.get(key, ZERO) + line.amount
    return state
