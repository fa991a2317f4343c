"""Usage fees: graduated tiers on monthly active users (the 2026 model)."""
from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Sequence

from babel.numbers import format_decimal
from pydantic import BaseModel, ConfigDict, Field, model_validator

from billing.money import LOCALE
from pricing_models.base import Charge, ModelParams, Money, PricingContext, PricingModel, register


class Tier(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    up_to: Annotated[int, Field(strict=True, gt=0)] | None   # inclusive upper bound of the tier; None = no limit
    unit_price: Money          # zero allowed: a free tier


def graduated(quantity: int, tiers: Sequence[Tier]) -> list[tuple[int, int, int, Decimal]]:
    """Split `quantity` over graduated tiers: (first, last, units, unit_price) per non-empty tier."""
    parts, lower = [], 0
    for tier in tiers:
        upper = quantity if tier.up_to is None else min(quantity, tier.up_to)
        if upper > lower:
            parts.append((lower + 1, upper, upper - lower, tier.unit_price))
        if tier.up_to is None or quantity <= tier.up_to:
            break
        lower = tier.up_to
    return parts


@register("graduated_usage")
class GraduatedUsage(PricingModel):
    """Each monthly active user is priced by the tier it falls in (first 10 at $10, ...)."""

    class Params(ModelParams):
        placeholders = ("first", "last")
        tiers: tuple[Tier, ...]
        unit: str = "MAU"
        description: str = "Monthly active users {first}–{last}"

        @model_validator(mode="after")
        def _ordered(self):
            bounds = [t.up_to for t in self.tiers]
            if not bounds:
                raise ValueError("tiers: give at least one tier")
            if any(b is None for b in bounds[:-1]):
                raise ValueError("tiers: only the last tier may have up_to: null")
            finite = [b for b in bounds if b is not None]
            if finite != sorted(set(finite)) or any(b <= 0 for b in finite):
                raise ValueError(f"tiers: up_to must increase strictly and be positive, got {bounds}")
            return self

    def charges(self, ctx: PricingContext, earlier: Sequence[Charge]) -> list[Charge]:
        mau = ctx.total_mau
        lines = []
        for first, last, units, price in graduated(mau, self.params.tiers):
            lines.append(Charge("usage", self.describe(first=_count(first), last=_count(last)),
                                units * price, ctx.currency, quantity=Decimal(units), unit=self.params.unit,
                                unit_price=price, details=(("total_mau", str(mau)),)))
        return lines


def _count(n: int) -> str:
    """A number of users as documents print numbers: 1,001."""
    return format_decimal(n, locale=LOCALE)
