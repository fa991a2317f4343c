"""Cloud cost: passed through at cost, optionally with a markup, optionally capped.

Descriptions print every amount with `billing.money.format_money` and every
percentage as `format_percent` does, and a percentage says what it is of.
"""
from __future__ import annotations

from typing import Literal, Sequence

from billing.money import ZERO, format_money
from billing.months import Month
from pricing_models.base import (CAP_SCOPES, Charge, ModelParams, Money, Percent, PricingContext, PricingModel, percent_number,
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
    """The community never pays more than `amount` a month for its service fees (markup included: what the
    organization earns), or, with `applies_to: all`, for everything; the excess is credited. A cap on the
    fees never credits cloud cost passed through, so runaway cloud spend is not paid by the organization."""

    class Params(ModelParams):
        placeholders = ("amount", "currency", "scope")
        amount: Money
        applies_to: Literal["fees", "all"] = "fees"
        description: str = "Monthly cap of {amount} on {scope}"

    def charges(self, ctx: PricingContext, earlier: Sequence[Charge]) -> list[Charge]:
        kinds = CAP_SCOPES[self.params.applies_to]
        total = rounded_sum(earlier, kinds=kinds)
        # Never more than the community owes so far (after a discount, say): the bill cannot turn negative.
        excess = min(total - self.params.amount, rounded_sum(earlier))
        if excess <= 0:
            return []
        scope = "service fees" if self.params.applies_to == "fees" else "all charges"
        return [Charge("cap", self.describe(amount=format_money(self.params.amount, ctx.currency),
                                            currency=ctx.currency, scope=scope),
                       -excess, ctx.currency, details=(("charges_before_cap", str(total)),
                                                       ("applies_to", self.params.applies_to)))]
