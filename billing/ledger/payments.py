"""Payments received and what they pay: reading them (recording them is `billing.payments`' job).

A payment is what the bank reported (date, amount, currency, reference
text). It is applied to documents by allocations: matched by the document
number found in its reference, or applied by hand. A payment without an
allocation is unmatched. Partial payments and overpayments are kept as such:
an allocation is what the payer paid towards that document.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from billing.ledger.schema import AllocationRow, InvoiceRow, PaymentRow
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


@dataclass(frozen=True)
class AccountDocument:
    """A numbered document as the accounts see it: what it asks for (or credits), from whom, when it is due."""

    number: str
    document_type: str       # invoice, credit_note or statement
    status: str              # finalized, credited, voided or replaced
    party_kind: str
    party_id: str
    party_name: str
    currency: str
    month: str
    issue_date: dt.date
    due_date: dt.date
    total: Decimal
    corrects: str | None     # a credit note or a replacement: the number of the document it corrects

    @property
    def party(self) -> str:
        return f"{self.party_kind}:{self.party_id}"


def account_documents(session: Session) -> list[AccountDocument]:
    """Every numbered document (drafts have no number), by issue date, then in the order they were made."""
    rows = session.scalars(select(InvoiceRow).where(InvoiceRow.number.is_not(None), InvoiceRow.status != "draft")
                           .order_by(InvoiceRow.issue_date, InvoiceRow.id))
    return [AccountDocument(r.number, r.document_type, r.status, r.party_kind, r.party_id,
                            json.loads(r.bill_to).get("display_name") or r.party_id, r.currency, r.month,
                            r.issue_date, r.due_date, r.total, r.corrects) for r in rows]


def payments_in(session: Session) -> list[Payment]:
    """Every payment, oldest first, with its allocations (inside the caller's transaction)."""
    allocations: dict[int, list[Allocation]] = {}
    for row in session.scalars(select(AllocationRow).order_by(AllocationRow.id)):
        allocations.setdefault(row.payment_id, []).append(
            Allocation(row.payment_id, row.number, row.amount, row.how, row.applied_at))
    return [Payment(r.id, r.received_on, r.amount, r.currency, r.reference, r.payer, r.source,
                    tuple(allocations.get(r.id, ())))
            for r in session.scalars(select(PaymentRow).order_by(PaymentRow.received_on, PaymentRow.id))]


def all_documents(engine: Engine) -> list[AccountDocument]:
    with Session(engine) as session:
        return account_documents(session)


def all_payments(engine: Engine) -> list[Payment]:
    """Every payment, oldest first, with its allocations."""
    with Session(engine) as session:
        return payments_in(session)


def paid_by_document(engine: Engine) -> dict[str, Decimal]:
    """What has been paid towards each document number."""
    totals: dict[str, Decimal] = {}
    with Session(engine) as session:
        for row in session.scalars(select(AllocationRow)):
            totals[row.number] = totals.get(row.number, ZERO) + row.amount
    return totals
