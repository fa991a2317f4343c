"""An invoice as a document: everything the PDF shows, already rounded.

The ledger builds these from its rows; `invoices.render` turns them into
PDFs. Amounts are Decimals rounded to the currency's minor unit.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True)
class Party:
    id: str
    name: str
    email: str | None = None
    address: tuple[str, ...] = ()


@dataclass(frozen=True)
class Issuer:
    name: str
    address: tuple[str, ...] = ()
    email: str | None = None
    website: str | None = None
    tax_id: str | None = None
    payment_instructions: tuple[str, ...] = ()


@dataclass(frozen=True)
class DocumentLine:
    """One invoice line. `section` groups lines: 'Fees', 'Cloud costs', 'Subsidies', ..."""

    section: str
    description: str
    amount: Decimal
    quantity: Decimal | None = None
    unit: str | None = None
    unit_price: Decimal | None = None
    hub: str | None = None
    cluster: str | None = None
    component: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class InvoiceDocument:
    issuer: Issuer
    bill_to: Party
    number: str | None            # None for a draft
    status: str                   # "draft" or "finalized"
    issue_date: dt.date
    due_date: dt.date
    period_start: dt.date
    period_end: dt.date           # inclusive last day, for display
    period_label: str             # "January 2022"
    currency: str
    lines: tuple[DocumentLine, ...]
    subtotal: Decimal
    total: Decimal
    notes: tuple[str, ...] = field(default=())
    reference: str = ""           # stable id of the invoice in the ledger (shown on drafts)

    @property
    def is_draft(self) -> bool:
        return self.status != "finalized"

    def sections(self) -> list[tuple[str, list[DocumentLine], Decimal]]:
        """Lines grouped by section, in first-seen order, with each section's sum."""
        order: list[str] = []
        groups: dict[str, list[DocumentLine]] = {}
        for line in self.lines:
            if line.section not in groups:
                order.append(line.section)
                groups[line.section] = []
            groups[line.section].append(line)
        return [(s, groups[s], sum((l.amount for l in groups[s]), Decimal(0))) for s in order]


def document_for(invoice) -> InvoiceDocument:
    """The printable form of a ledger invoice (`billing.ledger.Invoice`)."""
    from billing.months import Month

    month = Month.parse(invoice.month)
    issuer = invoice.issuer
    bill_to = invoice.bill_to
    lines = tuple(DocumentLine(section=l.section, description=l.description, amount=l.amount, quantity=l.quantity,
                               unit=l.unit, unit_price=l.unit_price, hub=l.hub, cluster=l.cluster,
                               component=l.component, note=dict(l.details).get("split"))
                  for l in invoice.lines)
    return InvoiceDocument(
        issuer=Issuer(issuer["name"], tuple(issuer.get("address") or ()), issuer.get("email"), issuer.get("website"),
                      issuer.get("tax_id"), tuple(issuer.get("payment_instructions") or ())),
        bill_to=Party(bill_to["id"], bill_to.get("display_name") or bill_to["name"], bill_to.get("email"),
                      (f"Attn: {bill_to['name']}", *bill_to.get("address", ()))),
        number=invoice.number, status=invoice.status, issue_date=invoice.issue_date, due_date=invoice.due_date,
        period_start=month.start, period_end=month.end - dt.timedelta(days=1), period_label=month.label(),
        currency=invoice.currency, lines=lines, subtotal=invoice.subtotal, total=invoice.total,
        notes=tuple(invoice.notes), reference=f"{invoice.party_kind}/{invoice.party_id}/{invoice.month}")
