"""Cloud cost: passed through at cost, optionally with a markup, optionally capped.

Descriptions print every amount with `billing.money.format_money` and every
percentage as `format_percent` does, and a percentage says what it is of.
"""
from __future__ import annotations

from typing import Sequence

from billing.money import ZERO, format_money
from billing.months import Month
from pricing_models.base import (Charge, ModelParams, Money, Percent, PricingContext, PricingModel, percent_number,
                                 register, rounded_sum)

COMPONENT_LABELS = {"compute": "Compute", "storage": "Storage", "networking": "Networking", "core": "Core services",
                    "other": "Other services", "tax": "Sales tax charged by the cloud provider",
                    "credit": "Credits from the cloud provider"}


def describe_cloud_cost(hub: str | None, cluster: str, component: str, allocation: str,
                        corrects: str | None = None) -> str:
    """"Compute, hub x", "Storage, hub x: share of shared cluster y", "Core services, cluster y overhead";
    a correction of an earlier month starts "Correction to May 2022 charges: "."""
    label = COMPONENT_LABELS.get(component, component.capitalize())
    if allocation == "direct":
        text = f"{label}, hub {hub}"
    elif allocation == "shared":
        text = f"{label}, hub {hub}: share of shared cluster {cluster}"
    else:
        text = f"{label}, cluster {cluster} overhead"
    return f"Correction to {Month.parse(corrects).label()} charges: {text}" if corrects else text


@register("cloud_passthrough")
class CloudPassthrough(PricingModel):
    """Every attributed cloud cost as its own line, at cost; a correction of an earlier month is a line of its own."""

    def charges(self, ctx: PricingContext, earlier: Sequence[Charge]) -> list[Charge]:
        return [Charge("cloud", describe_cloud_cost(c.hub, c.cluster, c.component, c.allocation, c.corrects),
                       c.amount, ctx.currency, hub=c.hub, cluster=c.cluster, component=c.component,
                       details=(("allocation", c.allocation),) + ((("split", c.note),) if c.note else ())
                       + ((("corrects", c.corrects),) if c.corrects else ()))
                for c in ctx.cloud if c.amount != ZERO]


@register("markup")
class Markup(PricingModel):
    """A percentage on the cloud cost passed through."""

    class Params(ModelParams):
        placeholders = ("percent", "base")
        percent: Percent
        description: str = "Markup: {percent}% of cloud costs of {base}"

    def charges(self, ctx: PricingContext, earlier: Sequence[Charge]) -> list[Charge]:
        base = rounded_sum(earlier, kinds={"cloud"})
        if base <= 0:
            return []
        percent = self.params.percent
        return [Charge("markup", self.describe(percent=percent_number(percent), base=format_money(base, ctx.currency)),
                       base * percent / 100, ctx.currency, quantity=percent, unit="%",
                       details=(("base", str(base)),))]


@register("cap")
class Cap(PricingModel):
    """The community never pays more than `amount` a month; the excess is credited."""

    class Params(ModelParams):
        placeholders = ("amount", "currency")
        amount: Money
        description: str = "Monthly cap of {amount}"

    def charges(self, ctx: PricingContext, earlier: Sequence[Charge]) -> list[Charge]:
        total = rounded_sum(earlier)
        excess = total - self.params.amount
        if excess <= 0:
            return []
        return [Charge("cap", self.describe(amount=format_money(self.params.amount, ctx.currency),
                                            currency=ctx.currency),
                       -excess, ctx.currency, details=(("charges_before_cap", str(total)),))]
