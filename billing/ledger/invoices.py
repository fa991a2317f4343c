"""Invoices as plain values, and building them from a month's charges (one per billed party, lines rounded once)."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterable

from billing.config import Organization
from billing.errors import InputError
from billing.money import ZERO, round_money
from billing.months import Month
from pricing_models import Charge
from pricing_models.base import SECTIONS


# ---- plain values the rest of the pipeline sees ---------------------------------------


@dataclass(frozen=True)
class Line:
    section: str
    kind: str
    description: str
    amount_exact: Decimal
    amount: Decimal
    quantity: Decimal | None = None
    unit: str | None = None
    unit_price: Decimal | None = None
    community: str | None = None
    hub: str | None = None
    cluster: str | None = None
    component: str | None = None
    details: tuple[tuple[str, str], ...] = ()


DOCUMENT_TYPES = ("invoice", "credit_note", "statement")
# draft: no number yet; finalized: in force; credited: cancelled by a credit note and replaced;
# voided: cancelled by a credit note; replaced: a statement (nothing due) superseded by another document.
STATUSES = ("draft", "finalized", "credited", "voided", "replaced")


@dataclass(frozen=True)
class Invoice:
    """A billing document of one party for one service month: an invoice, a credit note or a statement."""

    party_kind: str
    party_id: str
    month: str
    currency: str
    issue_date: dt.date
    due_date: dt.date
    lines: tuple[Line, ...]
    bill_to: dict
    issuer: dict
    data_fingerprint: str
    status: str = "draft"
    number: str | None = None
    notes: tuple[str, ...] = ()
    document_type: str = "invoice"
    corrects: str | None = None      # a credit note or a replacement: the number of the document it corrects
    reason: str | None = None        # why a correction was issued
    # Related documents at finalization, e.g. {"funder": {"number": ..}} or {"communities": {id: number}}.
    links: dict = field(default_factory=dict)

    @property
    def subtotal(self) -> Decimal:
        return sum((l.amount for l in self.lines), ZERO)

    @property
    def total(self) -> Decimal:
        return self.subtotal

    @property
    def content_hash(self) -> str:
        """The money the document states: party, currency, and each line's kind, place, quantity, unit price
        and rounded amount, in any order. Not its wording, dates or source files: a new version of this
        software that words a line differently does not make a finalized month look restated."""
        lines = sorted([l.kind, l.hub or "", l.cluster or "", l.component or "", _s(l.quantity) or "",
                        _s(l.unit_price) or "", _s(round_money(l.amount, self.currency))] for l in self.lines)
        body = {"party": [self.party_kind, self.party_id], "currency": self.currency, "lines": lines}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    @property
    def is_in_force(self) -> bool:
        """The party's current document for the month (not a draft, not cancelled, not a credit note)."""
        return self.status == "finalized" and self.document_type != "credit_note"


def _s(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


# ---- building invoices from charges ---------------------------------------------------


def today_utc() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


# Party-level fields printed with the bill-to address (when the configuration has them).
PARTY_FIELDS = ("legal_name", "tax_id", "purchase_order", "customer_reference", "grant")


def bill_to_of(entity) -> dict:
    """What the document says about the billed party, as it stands at finalization (kept with the document).

    A party that asked for e-invoices also keeps the format and its country (which the e-invoice states), so the
    document can be produced again from the ledger alone.
    """
    contact = entity.billing_contact.model_dump(mode="json", exclude={"country"})
    party = {"id": entity.id, **contact, "address": list(contact.get("address") or ()), "display_name": entity.name,
             **{f: getattr(entity, f) for f in PARTY_FIELDS if getattr(entity, f, None) is not None}}
    if entity.einvoice != "none":
        party["einvoice"] = entity.einvoice
    country = entity.billing_contact.country if entity.einvoice == "none" else entity.billing_contact.country_code
    if country:
        party["country"] = country
    return party


@dataclass(frozen=True)
class CarriedAdjustment:
    """A correction of an earlier invoice, carried to the party's next invoice as prior-period lines."""

    id: int
    party_kind: str
    party_id: str
    currency: str
    corrects: str
    service_month: str
    lines: tuple[Line, ...]
    reason: str


def build_invoices(org: Organization, month: Month, charges: dict[str, list[Charge]],
                   data_fingerprint: str, notes: Iterable[str] = (), *, issue_date: dt.date | None = None,
                   carried: Iterable[CarriedAdjustment] = (),
                   extra: dict[tuple[str, str], list[Charge]] | None = None) -> list[Invoice]:
    """One document per billed party (community or funder), lines rounded once.

    A community's month that totals zero is a statement (nothing is due).
    Adjustments carried from corrected earlier invoices are added as
    prior-period lines, unless they would make the total negative (then
    they wait for a later invoice). `extra`: charges of a party outside any
    community's plan (one-off charges and credits), by (party kind, id).
    """
    issue = issue_date or today_utc()
    due = issue + dt.timedelta(days=org.issuer.payment_terms_days)
    issuer = org.issuer.model_dump(mode="json")
    by_party: dict[tuple[str, str], list[Charge]] = {}
    for community_id, community_charges in charges.items():
        by_party.setdefault(("community", community_id), [])
        for ch in community_charges:
            party = ("community", community_id) if ch.bill_to is None else ("funder", ch.bill_to)
            by_party.setdefault(party, []).append(ch)
    for party, party_charges in (extra or {}).items():
        by_party.setdefault(party, []).extend(party_charges)
    carried_by_party: dict[tuple[str, str], list[CarriedAdjustment]] = {}
    for adj in carried:
        carried_by_party.setdefault((adj.party_kind, adj.party_id), []).append(adj)
    section_order = list(dict.fromkeys(SECTIONS.values()))
    invoices = []
    for (kind, party_id), party_charges in sorted(by_party.items(), key=lambda kv: _party_order(org, kv[0])):
        entity = org.community(party_id) if kind == "community" else org.funder(party_id)
        _check_one_currency(kind, party_id, entity.currency, party_charges, month)
        ordered = sorted(party_charges, key=lambda c: section_order.index(SECTIONS[c.kind]))
        lines = tuple(Line(_section(kind, c.kind), c.kind, c.description, c.amount, c.rounded, c.quantity, c.unit,
                           c.unit_price, c.community, c.hub, c.cluster, c.component, c.details) for c in ordered)
        if lines_total(lines) < 0:
            raise InputError(f"{month}: the {kind} {party_id!r} would be invoiced {lines_total(lines)} "
                             f"{entity.currency}, a negative total; an invoice never pays the customer: check its "
                             "one-off credits and the credits, discounts and caps of its pricing plan")
        adjustments = tuple(l for adj in carried_by_party.get((kind, party_id), ()) if adj.currency == entity.currency
                            for l in adj.lines)
        if adjustments and lines_total(lines + adjustments) >= 0:
            lines += adjustments
        document_type = "statement" if kind == "community" and lines_total(lines) == 0 else "invoice"
        invoices.append(Invoice(kind, party_id, str(month), entity.currency, issue, due, lines, bill_to_of(entity),
                                issuer, data_fingerprint, notes=tuple(notes), document_type=document_type))
    return invoices


def _section(party_kind: str, kind: str) -> str:
    """The heading a line goes under; what a funder pays for its communities reads as such."""
    return "Grant-funded charges" if party_kind == "funder" and kind == "subsidy" else SECTIONS[kind]


def lines_total(lines: Iterable[Line]) -> Decimal:
    return sum((l.amount for l in lines), ZERO)


def _check_one_currency(kind: str, party_id: str, currency: str, charges: list[Charge], month: Month) -> None:
    """A document is in one currency: every charge on a party's invoice is in the party's currency."""
    for ch in charges:
        if ch.currency != currency:
            about = f" for community {ch.community!r}" if ch.community and ch.community != party_id else ""
            raise InputError(f"{month}: a {ch.currency} charge ({ch.description!r}){about} would go on the {currency} "
                             f"invoice of {kind} {party_id!r}; a document is in one currency: invoice them in the "
                             "same currency, or convert with exchange_rates")


def _party_order(org: Organization, party: tuple[str, str]) -> tuple:
    kind, pid = party
    ids = [c.id for c in org.communities] if kind == "community" else [f.id for f in org.funders]
    return (kind != "community", ids.index(pid) if pid in ids else len(ids), pid)
