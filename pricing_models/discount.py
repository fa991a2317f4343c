"""Discounts: a percentage or a fixed amount off the community's fees, cloud costs or whole bill.

A discount is never a negative fee: it is its own line, in the Adjustments
section, and never larger than what it applies to, so it cannot make the
fees, the cloud costs or the bill so far negative. A fixed monthly credit is
a discount of an `amount` that applies to `all`.
"""
from __future__ import annotations

from typing import Literal, Sequence

from pydantic import model_validator

from billing.money import format_money, format_percent
from pricing_models.base import (Charge, ModelParams, PositiveMoney, PricingContext, PricingModel, Share, percent_text,
                                 register, rounded_sum, scope_sum)

SCOPE_LABELS = {"all": "all charges", "fees": "service fees", "cloud": "cloud costs"}


@register("discount")
class Discount(PricingModel):
    """`percent` of, or `amount` off, the charges so far in `applies_to`, limited to them and to the bill so far."""

    class Params(ModelParams):
        placeholders = ("discount", "scope", "base")
        percent: Share | None = None
        amount: PositiveMoney | None = None
        applies_to: Literal["all", "fees", "cloud"] = "all"
        description: str = "Discount: {discount} off {scope} of {base}"

        @model_validator(mode="after")
        def _percent_or_amount(self):
            if (self.percent is None) == (self.amount is None):
                raise ValueError("give exactly one of percent (a share of what the discount applies to) and "
                                 "amount (a fixed amount off)")
            return self

    def charges(self, ctx: PricingContext, earlier: Sequence[Charge]) -> list[Charge]:
        scope = self.params.applies_to
        base = scope_sum(earlier, scope)
        room = min(base, rounded_sum(earlier))     # neither the scope nor the bill so far may go below zero
        if room <= 0:
            return []
        percent, amount = self.params.percent, self.params.amount
        wanted = base * percent / 100 if percent is not None else amount
        off = min(wanted, room)
        shown = f"{percent_text(percent)}%" if percent is not None else f"{amount} {ctx.currency}"
        details = (("applies_to", scope), ("base", str(base)), ("discount", shown)) + (
            (("limited_to", str(room)),) if off < wanted else ())
        described = self.describe(
            discount=format_percent(percent) if percent is not None else format_money(amount, ctx.currency),
            scope=SCOPE_LABELS[scope], base=format_money(base, ctx.currency))
        return [Charge("discount", described, -off, ctx.currency,
                       quantity=percent, unit="%" if percent is not None else None, details=details)]
