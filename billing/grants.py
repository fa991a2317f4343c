"""Grants that run out: how much of each funder's award has been drawn, month by month (`billing grants`).

Read from the ledger's finalized documents: what each funder was invoiced
under an award (its grant lines say which), by service month, credit notes
counting negatively. `out/grants.csv` has one row per award and month:

    funder, award, currency, amount, month, drawn, cumulative, remaining, share_drawn

A warning is given when an award is 80% drawn, and when it is used up.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from billing.money import ZERO
from billing.outputs import write_csv

WARN_AT = (Decimal(80), Decimal(100))   # percent drawn


@dataclass(frozen=True)
class AwardMonth:
    funder: str
    award: str
    currency: str
    amount: Decimal
    month: str
    drawn: Decimal
    cumulative: Decimal

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.cumulative

    @property
    def share_drawn(self) -> Decimal:
        return (self.cumulative * 100 / self.amount).quantize(Decimal("0.1"))


def award_months(org, documents) -> list[AwardMonth]:
    """Each configured award, each month from its start to the last month drawn or its end."""
    drawn: dict[tuple[str, str], Decimal] = {}
    for doc in documents:
        if doc.status == "draft" or doc.party_kind != "funder":
            continue
        for line in doc.lines:
            award = dict(line.details).get("award")
            if line.kind == "subsidy" and award:
                drawn[(award, doc.month)] = drawn.get((award, doc.month), ZERO) + line.amount
    rows = []
    for funder in org.funders:
        for award in funder.awards:
            months = sorted(m for a, m in drawn if a == award.id)
            last = max([award.until] if not months else [min(award.until, months[-1]), months[-1]])
            cumulative = ZERO
            from billing.months import Month, month_range

            for month in month_range(Month.parse(award.start), Month.parse(last)):
                amount = drawn.get((award.id, str(month)), ZERO)
                cumulative += amount
                rows.append(AwardMonth(funder.id, award.id, award.currency, award.amount, str(month), amount,
                                       cumulative))
    return rows


def warnings(rows: list[AwardMonth]) -> list[str]:
    """An award 80% drawn, or used up: once each, in the month it happened."""
    said, result = set(), []
    for row in rows:
        for level in WARN_AT:
            if row.cumulative * 100 >= row.amount * level and (row.award, level) not in said:
                said.add((row.award, level))
                what = "is used up" if level == 100 else f"is {row.share_drawn}% drawn"
                result.append(f"award {row.award} of {row.funder} {what} in {row.month}: {row.cumulative:,.2f} of "
                              f"{row.amount:,.2f} {row.currency}, {row.remaining:,.2f} remaining")
    return result


def write_grants_csv(path: Path, rows: list[AwardMonth]) -> None:
    header = ["funder", "award", "currency", "amount", "month", "drawn", "cumulative", "remaining", "share_drawn"]
    write_csv(path, header, ([r.funder, r.award, r.currency, r.amount, r.month, r.drawn, r.cumulative, r.remaining,
                              r.share_drawn] for r in rows))
