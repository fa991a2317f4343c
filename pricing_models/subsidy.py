"""Subsidies: a funder (a grant) pays a share or all of a community's charges."""
from __future__ import annotations

from typing import Literal, Sequence

from billing.money import ZERO, format_money, round_money
from pricing_models.base import (Charge, ModelParams, PricingContext, PricingModel, Share, percent_text, register,
                                 rounded_sum, scope_sum)


@register("subsidy")
class Subsidy(PricingModel):
    """Credits `share` percent of the community's charges and bills them to its funder.

    Applies to charges before tax is added by this tool (cloud tax rows are
    part of the cloud cost and are covered when `applies_to` includes cloud).
    Emits a negative line on the community's invoice and the same positive
    amount on the funder's invoice. A funder never pays more than the
    community owes so far: after a cap or a discount on the whole bill, a
    subsidy of the fees is limited to the bill, so it cannot turn negative.
    """

    class Params(ModelParams):
        share: Share
        applies_to: Literal["all", "fees", "cloud"] = "all"

    def _split_bases(self, earlier: Sequence[Charge]) -> tuple[tuple[str, str], ...]:
        """The service fees and cloud costs the subsidy applies to (each net of the discounts on it).

        Grant reports split what a funder paid between the two, in proportion
        to these (`billing.documents.split_funded`); a cap or a discount on the
        whole bill reduces both alike. Details only: no amount depends on them.
        """
        scope = self.params.applies_to
        fees = scope_sum(earlier, "fees") if scope in ("all", "fees") else ZERO
        cloud = scope_sum(earlier, "cloud") if scope in ("all", "cloud") else ZERO
        return ("applies_to", scope), ("fees_base", str(fees)), ("cloud_base", str(cloud))

    def charges(self, ctx: PricingContext, earlier: Sequence[Charge]) -> list[Charge]:
        if ctx.funder is None:
            raise ValueError(f"community {ctx.community.id!r} has a subsidy in its plan but no funder")
        base = scope_sum(earlier, self.params.applies_to)
        if base == 0:
            return []
        share = self.params.share
        wanted = base * share / 100
        bill = rounded_sum(earlier)
        amount = min(wanted, max(bill, ZERO)) if wanted > 0 else wanted
        limited = ", limited to the balance so far" if amount != wanted else ""
        award_details: tuple = ()
        if getattr(ctx.funder, "awards", ()):
            award = ctx.funder.award_for(str(ctx.month))
            if award is None:
                return []       # no award covers this month: the community pays its charges itself
            drawn = ctx.state.award_drawn.get(award.id, ZERO)
            left = max(award.amount - drawn, ZERO)
            if round_money(amount, ctx.currency) > left:
                amount = left
                limited = (f", limited to the {format_money(left, ctx.currency)} left on award {award.id}, "
                           "now used up; the rest is yours")
            award_details = (("award", award.id), ("award_amount", str(award.amount)),
                             ("award_drawn_before", str(drawn)),
                             ("award_remaining_after", str(left - round_money(amount, ctx.currency))))
        if amount == 0:
            return []
        pct = percent_text(share)
        scope = {"all": "charges", "fees": "service fees", "cloud": "cloud costs"}[self.params.applies_to]
        details = (("base", str(base)), ("share", str(share)), ("funder", ctx.funder.id)) + (
            (("limited_to", str(bill)),) if limited else ()) + self._split_bases(earlier) + (
            (("grant", ctx.funder.grant),) if ctx.funder.grant else ()) + award_details
        grant = f" ({ctx.funder.grant})" if ctx.funder.grant else ""
        return [
            Charge("subsidy", f"Paid by {ctx.funder.name}{grant}: {pct}% of {scope}{limited}", -amount, ctx.currency,
                   quantity=share, unit="%", details=details),
            Charge("subsidy", f"{ctx.community.name}: {pct}% of {scope} for {ctx.month.label()}"
                   f"{limited.replace('; the rest is yours', '; the community pays the rest')}", amount,
                   ctx.currency, quantity=share, unit="%", bill_to=ctx.funder.id, details=details),
        ]
