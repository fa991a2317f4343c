"""Fixed fees: a flat monthly fee, a fee by community tier, an uplift for dedicated clusters."""
from __future__ import annotations

from decimal import Decimal
from typing import Literal, Sequence

from billing.money import format_money
from pricing_models.base import (Charge, ModelParams, Money, Percent, PricingContext, PricingModel, percent_number,
                                 register, rounded_sum)


@register("fixed_fee")
class FixedFee(PricingModel):
    """The same fee every month (e.g. a membership of $15,000 a year as 1/12 each month)."""

    class Params(ModelParams):
        placeholders = ("amount", "currency")
        amount: Money
        description: str = "Monthly service fee"

    def charges(self, ctx: PricingContext, earlier: Sequence[Charge]) -> list[Charge]:
        amount = self.params.amount
        return [Charge("fee", self.describe(amount=format_money(amount, ctx.currency), currency=ctx.currency),
                       amount, ctx.currency, quantity=Decimal(1), unit="month", unit_price=amount)]


@register("tier_fee")
class TierFee(PricingModel):
    """A monthly fee set by the community's kind (the 2022 alpha table)."""

    class Params(ModelParams):
        placeholders = ("kind",)
        fees: dict[Literal["education", "research", "partnership"], Money]
        description: str = "Monthly service fee ({kind} tier)"

    def charges(self, ctx: PricingContext, earlier: Sequence[Charge]) -> list[Charge]:
        kind = ctx.community.kind
        if kind not in self.params.fees:
            raise ValueError(f"plan has no fee for community kind {kind!r}")
        fee = self.params.fees[kind]
        return [Charge("fee", self.describe(kind=kind.capitalize()), fee, ctx.currency,
                       quantity=Decimal(1), unit="month", unit_price=fee,
                       details=(("tier", kind),))]


@register("dedicated_uplift")
class DedicatedUplift(PricingModel):
    """A percentage on the fees so far when the community has a dedicated cluster."""

    class Params(ModelParams):
        placeholders = ("percent", "base")
        percent: Percent
        description: str = "Dedicated cluster: +{percent}% on service fees of {base}"

    def charges(self, ctx: PricingContext, earlier: Sequence[Charge]) -> list[Charge]:
        base = rounded_sum(earlier, kinds={"fee", "usage"})
        if not ctx.dedicated or base == 0:
            return []
        percent = self.params.percent
        described = self.describe(percent=percent_number(percent), base=format_money(base, ctx.currency))
        return [Charge("uplift", described, base * percent / 100, ctx.currency, quantity=percent, unit="%",
                       unit_price=None,
                       details=(("base", str(base)), ("percent", str(percent))))]

