"""Minimum commitments: when a community's charges stay below a committed minimum, a true-up line."""
from __future__ import annotations

from typing import Literal, Sequence

from billing.money import format_money
from pricing_models.base import (SCOPES, Charge, ModelParams, PositiveMoney, PricingContext, PricingModel, register,
                                 rounded_sum)


@register("minimum")
class Minimum(PricingModel):
    """A minimum commitment: when the month's (or the calendar year's) charges of the given kinds stay below
    `amount`, a true-up line brings them up to it. A monthly minimum is prorated by days like a fixed fee; a
    yearly one is settled on the December invoice, or on the last invoice of a contract that ends earlier."""

    class Params(ModelParams):
        placeholders = ("amount", "period", "charged")
        amount: PositiveMoney
        period: Literal["month", "year"] = "month"
        applies_to: Literal["fees", "all"] = "fees"
        description: str = "Minimum commitment of {amount} a {period}: true-up ({charged} charged)"

    def charges(self, ctx: PricingContext, earlier: Sequence[Charge]) -> list[Charge]:
        kinds = SCOPES[self.params.applies_to]
        charged = rounded_sum(earlier, kinds=kinds)
        minimum = self.params.amount
        if self.params.period == "month":
            minimum = ctx.prorated(minimum)
        else:
            if ctx.month.month != 12 and not ctx.last_month:
                return []
            charged += ctx.state.year_total(ctx.community.id, kinds)
        shortfall = minimum - charged
        if shortfall <= 0:
            return []
        described = self.describe(amount=format_money(self.params.amount, ctx.currency), period=self.params.period,
                                  charged=format_money(charged, ctx.currency))
        return [Charge("minimum", described, shortfall, ctx.currency,
                       details=(("minimum", str(minimum)), ("charged", str(charged)),
                                ("period", self.params.period), ("applies_to", self.params.applies_to)))]
