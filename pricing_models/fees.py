"""Fixed fees: a flat monthly fee, a fee by community tier, an uplift for dedicated clusters."""
from __future__ import annotations

from decimal import Decimal
from typing import Literal, Sequence

from pydantic import Field

from billing.money import format_money
from pricing_models.base import (Charge, ModelParams, Money, Percent, PricingContext, PricingModel, percent_number,
                                 register, rounded_sum)


def fee_charge(ctx: PricingContext, description: str, amount: Decimal, details: tuple = ()) -> Charge:
    """A monthly fee, prorated by days when the contract covers only part of the month (the line says so)."""
    if ctx.partial:
        days, total = ctx.active_days, ctx.days_in_month
        return Charge("fee", f"{description}: {days} of {total} days of {format_money(amount, ctx.currency)}",
                      ctx.prorated(amount), ctx.currency, quantity=Decimal(days), unit="days",
                      details=details + (("prorated", f"{days}/{total}"),))
    return Charge("fee", description, amount, ctx.currency, quantity=Decimal(1), unit="month", unit_price=amount,
                  details=details)


@register("fixed_fee")
class FixedFee(PricingModel):
    """The same fee every month (e.g. a membership of $15,000 a year as 1/12 each month), or once a year
    (`every: year`, in `billing_month`, e.g. a membership billed each January)."""

    class Params(ModelParams):
        placeholders = ("amount", "currency")
        amount: Money
        every: Literal["month", "year"] = "month"
        billing_month: int = Field(default=1, ge=1, le=12, strict=True)   # for every: year
        description: str = "Monthly service fee"

    def charges(self, ctx: PricingContext, earlier: Sequence[Charge]) -> list[Charge]:
        amount = self.params.amount
        described = self.describe(amount=format_money(amount, ctx.currency), currency=ctx.currency)
        if self.params.every == "year":
            if ctx.month.month != self.params.billing_month:
                return []
            return [Charge("fee", described, amount, ctx.currency, quantity=Decimal(1), unit="year",
                           unit_price=amount, details=(("every", "year"),))]
        return [fee_charge(ctx, described, amount)]


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
        return [fee_charge(ctx, self.describe(kind=kind.capitalize()), fee, details=(("tier", kind),))]


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

