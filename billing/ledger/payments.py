"""Payments received and what they pay: reading them (recording them is `billing.payments`' job).

A payment is what the bank reported (date, amount, currency, reference
text). It is applied to documents by allocations: matched by the document
number found in its reference, or applied by hand. A payment without an
allocation is unmatched. Partial payments and overpayments are kept as such:
an allocation is what the payer paid towards that document.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from billing.ledger.schema import AllocationRow, PaymentRow
from billing.money import ZERO


@dataclass(frozen=True)
class Allocation:
    payment_id: int
    number: str
    amount: Decimal
    how: str                 # matched or manual
    applied_at: dt.datetime


@dataclass(frozen=True)
class Payment:
    id: int
    received_on: dt.date
    amount: Decimal
    currency: str
    reference: str
    payer: str | None
    source: str
    allocations: tuple[Allocation, ...] = ()

    @property
    def unapplied(self) -> Decimal:
        return self.amount - sum((a.amount for a in self.allocations), ZERO)


def all_payments(engine: Engine) -> list[Payment]:
    """Every payment, oldest first, with its allocations."""
    with Session(engine) as session:
        allocations: dict[int, list[Allocation]] = {}
        for row in session.scalars(select(AllocationRow).order_by(AllocationRow.id)):
            allocations.setdefault(row.payment_id, []).append(
                Allocation(row.payment_id, row.number, row.amount, row.how, row.applied_at))
        return [Payment(r.id, r.received_on, r.amount, r.currency, r.reference, r.payer, r.source,
                        tuple(allocations.get(r.id, ())))
                for r in session.scalars(select(PaymentRow).order_by(PaymentRow.received_on, PaymentRow.id))]


def paid_by_document(engine: Engine) -> dict[str, Decimal]:
    """What has been paid towards each document number."""
    totals: dict[str, Decimal] = {}
    with Session(engine) as session:
        for row in session.scalars(select(AllocationRow)):
            totals[row.number] = totals.get(row.number, ZERO) + row.amount
    return totals
