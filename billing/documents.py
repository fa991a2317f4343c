"""A billing document as printed: everything the PDF shows, already rounded.

`document_for` turns a ledger invoice (an invoice, a credit note or a
statement) into an `InvoiceDocument`; `invoices.render` turns that into a
PDF with the template of its document type. Amounts are Decimals rounded to
the currency's minor unit. What differs between document types is data (the
`DocumentKind` table below) and a template, not branches in the code.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from billing.money import ZERO, round_money, to_decimal
from billing.months import Month


@dataclass(frozen=True)
class DocumentKind:
    """What a type of document is called, and whether it asks for payment."""

    name: str             # the ledger's document_type
    title: str            # "Invoice": headings, file titles, the page footer
    payable: bool         # a due date and payment instructions; else neither is printed
    template: str         # in invoices/templates/


DOCUMENT_KINDS = {
    "invoice": DocumentKind("invoice", "Invoice", True, "invoice.html.j2"),
    "credit_note": DocumentKind("credit_note", "Credit note", False, "credit_note.html.j2"),
    "statement": DocumentKind("statement", "Statement", False, "statement.html.j2"),
}

# CLDR supplemental measurementData: the countries whose paper is US Letter; A4 everywhere else.
LETTER_COUNTRIES = frozenset("BZ CA CL CO CR GT MX NI PA PH PR SV US VE".split())
PAGE_SIZES = ("a4", "letter")


def page_size_for(country: str | None, override: str | None = None) -> str:
    """The issuer's paper: `override` if given, else Letter in the countries that use it, else A4."""
    if override:
        return override
    return "letter" if country in LETTER_COUNTRIES else "a4"


@dataclass(frozen=True)
class Party:
    """Who a document is addressed to, with what their accounts-payable office needs to pay it."""

    id: str
    name: str
    email: str | None = None
    address: tuple[str, ...] = ()
    attention: str | None = None          # the billing contact's name
    legal_name: str | None = None
    tax_id: str | None = None
    purchase_order: str | None = None
    customer_reference: str | None = None
    country: str | None = None            # ISO 3166 code, when known
    einvoice: str | None = None           # "factur-x": the party's documents carry their EN 16931 XML


@dataclass(frozen=True)
class FiscalSponsor:
    name: str
    address: tuple[str, ...] = ()
    tax_id: str | None = None


@dataclass(frozen=True)
class Issuer:
    name: str
    address: tuple[str, ...] = ()
    email: str | None = None
    website: str | None = None
    tax_id: str | None = None
    payment_instructions: tuple[str, ...] = ()
    fiscal_sponsor: FiscalSponsor | None = None
    country: str | None = None            # ISO 3166 code: the seller's country (the fiscal sponsor's too)

    @property
    def seller_tax_id(self) -> str | None:
        """The tax id of the legal seller: the fiscal sponsor's when there is one."""
        return self.fiscal_sponsor.tax_id if self.fiscal_sponsor else self.tax_id


@dataclass(frozen=True)
class DocumentLine:
    """One line. `section` groups lines: 'Service fees', 'Cloud costs', 'Subsidies', ...

    `fees_part` and `cloud_part` (funder documents) split what a grant pays
    for a community between service fees and cloud costs; they add up to
    `amount`.
    """

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
    fees_part: Decimal | None = None
    cloud_part: Decimal | None = None


@dataclass(frozen=True)
class DocumentRef:
    """Another document this one refers to: the invoice a credit note or a replacement corrects."""

    number: str
    issue_date: dt.date | None = None
    total: Decimal | None = None
    credit_note: str | None = None        # for a replaced invoice: the credit note that cancelled it


@dataclass(frozen=True)
class Funding:
    """On a community's document: the funder that pays part or all of it, and the funder's own document."""

    funder: str
    grant: str | None
    covered: Decimal
    number: str | None = None


@dataclass(frozen=True)
class FundedCommunity:
    """On a funder's document: a community it pays for, that community's own document, and the split."""

    id: str
    name: str
    number: str | None
    document_type: str
    amount: Decimal
    fees: Decimal | None          # None: the lines do not record the split (documents issued before it was)
    cloud: Decimal | None

    @property
    def document_title(self) -> str:
        return DOCUMENT_KINDS.get(self.document_type, DOCUMENT_KINDS["invoice"]).title


@dataclass(frozen=True)
class InvoiceDocument:
    issuer: Issuer
    bill_to: Party
    number: str | None            # None for a draft
    status: str                   # "draft", "finalized", or later "credited", "voided", "replaced"
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
    document_type: str = "invoice"
    page_size: str = "a4"
    reason: str | None = None     # why a correction was issued
    corrects: DocumentRef | None = None   # a credit note: its original; a replacement: the invoice it replaces
    funding: Funding | None = None        # a community's document paid in part or in full by a funder
    grant: str | None = None              # a funder's document: the grant or award
    funded: tuple[FundedCommunity, ...] = ()
    awards: tuple[AwardStanding, ...] = ()  # a funder's document: each award drawn, to date and remaining

    @property
    def kind(self) -> DocumentKind:
        return DOCUMENT_KINDS[self.document_type]

    @property
    def is_draft(self) -> bool:
        """Not issued yet. A finalized document that was later credited or replaced prints as it was issued."""
        return self.status == "draft"

    @property
    def has_split(self) -> bool:
        return any(l.fees_part is not None for l in self.lines)

    def sections(self) -> list[tuple[str, list[DocumentLine], Decimal]]:
        """Lines grouped by section, in first-seen order, with each section's sum."""
        order: list[str] = []
        groups: dict[str, list[DocumentLine]] = {}
        for line in self.lines:
            if line.section not in groups:
                order.append(line.section)
                groups[line.section] = []
            groups[line.section].append(line)
        return [(s, groups[s], sum((l.amount for l in groups[s]), ZERO)) for s in order]

    def split_total(self) -> tuple[Decimal, Decimal] | None:
        """What the lines' split adds up to: (service fees, cloud costs), or None without a split."""
        parts = [l for l in self.lines if l.fees_part is not None]
        if not parts:
            return None
        return sum((l.fees_part for l in parts), ZERO), sum((l.cloud_part for l in parts), ZERO)


# ---- the split of what a funder pays ----------------------------------------------------


def split_funded(amount: Decimal, fees_base: Decimal, cloud_base: Decimal, currency: str) -> tuple[Decimal, Decimal]:
    """(service fees, cloud costs) of a funder's line, in proportion to the bases it applied to.

    The fees part is rounded half-up to the currency's minor unit and the
    cloud part is the rest, so the two add up to the line exactly. With no
    base to go by (both zero), everything is counted as cloud costs.
    """
    both = fees_base + cloud_base
    fees = round_money(amount * fees_base / both, currency) if both != 0 else ZERO
    return fees, amount - fees


def _line_split(line, currency: str) -> tuple[Decimal, Decimal] | None:
    details = dict(line.details)
    if line.kind != "subsidy" or "fees_base" not in details or "cloud_base" not in details:
        return None
    return split_funded(line.amount, to_decimal(details["fees_base"]), to_decimal(details["cloud_base"]), currency)


def _line_note(line, titles: dict[str, str]) -> str | None:
    """The small print under a line: how a shared cost was split, what an adjustment corrects, whose a grant line is."""
    details = dict(line.details)
    notes = [details["split"]] if details.get("split") else []
    if line.kind == "adjustment" and details.get("corrects"):   # (a cloud correction's "corrects" is a month)
        when = f" for {Month.parse(details['service_month']).label()}" if details.get("service_month") else ""
        notes.append(f"Corrects invoice {details['corrects']}{when}")
    if line.kind == "subsidy" and line.community in titles:
        notes.append(titles[line.community])
    return "; ".join(notes) or None


# ---- from the ledger ----------------------------------------------------------------------


def _date(text: str | None) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


def _amount(text: str | None) -> Decimal | None:
    return to_decimal(text) if text not in (None, "") else None


def _issuer(data: dict) -> Issuer:
    sponsor = data.get("fiscal_sponsor")
    return Issuer(data["name"], tuple(data.get("address") or ()), data.get("email"), data.get("website"),
                  data.get("tax_id"), tuple(data.get("payment_instructions") or ()),
                  FiscalSponsor(sponsor["name"], tuple(sponsor.get("address") or ()), sponsor.get("tax_id"))
                  if sponsor else None, data.get("country"))


def _party(data: dict) -> Party:
    return Party(data["id"], data.get("display_name") or data["name"], data.get("email"),
                 tuple(data.get("address") or ()), data.get("name") if data.get("display_name") else None,
                 data.get("legal_name"), data.get("tax_id"), data.get("purchase_order"),
                 data.get("customer_reference"), data.get("country"), data.get("einvoice"))


def _corrects(invoice) -> DocumentRef | None:
    """The document a credit note (links 'original') or a replacement invoice (links 'replaces') corrects."""
    links = invoice.links or {}
    ref = links.get("original") or links.get("replaces")
    if ref is None:
        return DocumentRef(invoice.corrects) if invoice.corrects else None
    credit_note = ref.get("credit_note") or (links.get("credit_note") or {}).get("number")
    return DocumentRef(ref.get("number") or invoice.corrects, _date(ref.get("issue_date")), _amount(ref.get("total")),
                       credit_note)


def _funding(invoice) -> Funding | None:
    funder = (invoice.links or {}).get("funder")
    if not funder:
        return None
    covered = _amount(funder.get("covered"))
    if covered is None:     # what the funder's lines on this document credit
        covered = -sum((l.amount for l in invoice.lines if l.kind == "subsidy"), ZERO)
    return Funding(funder.get("name") or funder.get("id"), funder.get("grant"), covered, funder.get("number"))


def _funded(invoice) -> tuple[FundedCommunity, ...]:
    """Each community a funder's document pays for, in the order of its links (then of its lines)."""
    linked = {c["id"]: c for c in (invoice.links or {}).get("communities", ())}
    lines: dict[str, list] = {}
    for line in invoice.lines:
        if line.kind == "subsidy" and line.community:
            lines.setdefault(line.community, []).append(line)
    funded = []
    for cid in list(linked) + [c for c in lines if c not in linked]:
        link, own = linked.get(cid, {}), lines.get(cid, [])
        splits = [_line_split(l, invoice.currency) for l in own]
        known = bool(own) and all(s is not None for s in splits)
        funded.append(FundedCommunity(
            cid, link.get("name") or cid, link.get("number"), link.get("document_type") or "invoice",
            sum((l.amount for l in own), ZERO),
            sum((s[0] for s in splits), ZERO) if known else None,
            sum((s[1] for s in splits), ZERO) if known else None))
    return tuple(funded)


@dataclass(frozen=True)
class AwardStanding:
    """Where an award stands once this document is paid: drawn to date (this document included), remaining."""

    id: str
    amount: Decimal
    drawn: Decimal
    remaining: Decimal


def _awards(invoice) -> tuple[AwardStanding, ...]:
    """The awards a funder's document draws on, from its grant lines (each says what remained after it)."""
    standing: dict[str, AwardStanding] = {}
    for line in invoice.lines:
        details = dict(line.details)
        if not details.get("award") or "award_remaining_after" not in details:
            continue
        amount, remaining = to_decimal(details["award_amount"]), to_decimal(details["award_remaining_after"])
        known = standing.get(details["award"])
        if known is None or remaining < known.remaining:
            standing[details["award"]] = AwardStanding(details["award"], amount, amount - remaining, remaining)
    return tuple(standing.values())


def _grant(invoice) -> str | None:
    """A funder's grant: from its snapshot, else from its grant lines (oldest documents)."""
    if invoice.bill_to.get("grant"):
        return invoice.bill_to["grant"]
    grants = dict.fromkeys(dict(l.details)["grant"] for l in invoice.lines if dict(l.details).get("grant"))
    return ", ".join(grants) or None


def document_for(invoice) -> InvoiceDocument:
    """The printable form of a ledger invoice (`billing.ledger.Invoice`)."""
    month = Month.parse(invoice.month)
    funder_doc = invoice.party_kind == "funder"
    funded = _funded(invoice) if funder_doc else ()
    titles = {c.id: title for c in funded if (title := _community_title(c))}
    lines = tuple(_document_line(l, invoice.currency, titles, funder_doc) for l in invoice.lines)
    issuer = invoice.issuer
    return InvoiceDocument(
        issuer=_issuer(issuer), bill_to=_party(invoice.bill_to),
        number=invoice.number, status=invoice.status, issue_date=invoice.issue_date, due_date=invoice.due_date,
        period_start=month.start, period_end=month.end - dt.timedelta(days=1), period_label=month.label(),
        currency=invoice.currency, lines=lines, subtotal=invoice.subtotal, total=invoice.total,
        notes=tuple(invoice.notes), reference=f"{invoice.party_kind}/{invoice.party_id}/{invoice.month}",
        document_type=invoice.document_type,
        page_size=page_size_for(issuer.get("country"), issuer.get("page_size")),
        reason=invoice.reason, corrects=_corrects(invoice), funding=_funding(invoice),
        grant=_grant(invoice) if funder_doc else None, funded=funded,
        awards=_awards(invoice) if funder_doc and invoice.document_type != "credit_note" else ())


def _community_title(community: FundedCommunity) -> str | None:
    """How a grant line names the community's own document: 'Community invoice OHC-2022-0017' (none on drafts)."""
    if community.number:
        return f"Community {community.document_title.lower()} {community.number}"
    return None


def _document_line(line, currency: str, titles: dict[str, str], funder_doc: bool) -> DocumentLine:
    split = _line_split(line, currency) if funder_doc else None
    return DocumentLine(section=line.section, description=line.description, amount=line.amount,
                        quantity=line.quantity, unit=line.unit, unit_price=line.unit_price, hub=line.hub,
                        cluster=line.cluster, component=line.component,
                        note=_line_note(line, titles),
                        fees_part=split[0] if split else None, cloud_part=split[1] if split else None)


# ---- statements of account -----------------------------------------------------------------


@dataclass(frozen=True)
class AccountRow:
    """A dated row of a statement of account: a charge (an invoice) or a payment or credit, and the balance."""

    date: dt.date
    kind: str                      # invoice, credit_note or payment
    reference: str                 # a document number, or the payment's reference as the bank gave it
    description: str
    charge: Decimal | None         # what an invoice adds
    credit: Decimal | None         # what a payment or a credit note takes off (positive)
    balance: Decimal
    due_date: dt.date | None = None
    note: str | None = None        # a payment: the reference the payer gave the bank


@dataclass(frozen=True)
class StatementOfAccount:
    """A party's account in one currency over a period, as printed (template statement_of_account.html.j2)."""

    issuer: Issuer
    bill_to: Party
    currency: str
    issue_date: dt.date            # the statement's date: the last day it covers
    period_start: dt.date
    period_end: dt.date
    opening: Decimal
    rows: tuple[AccountRow, ...]
    closing: Decimal
    invoiced: Decimal
    credited: Decimal              # credit notes (positive: what they take off)
    received: Decimal
    aging: tuple[tuple[str, Decimal], ...]      # (bucket, open amount) on the statement's date
    page_size: str = "a4"
    document_type: str = "statement_of_account"
    template: str = "statement_of_account.html.j2"


def statement_of_account(statement, issuer: dict, bill_to: dict) -> StatementOfAccount:
    """The printable form of a `billing.receivables.AccountStatement`; `issuer` and `bill_to` as the
    configuration gives them now (`Issuer.model_dump`, `billing.ledger.invoices.bill_to_of`)."""
    rows = tuple(AccountRow(e.date, e.kind, e.reference, e.description, e.amount if e.amount > 0 else None,
                            -e.amount if e.amount <= 0 else None, e.balance, e.due_date, e.note)
                 for e in statement.entries)
    return StatementOfAccount(
        issuer=_issuer(issuer), bill_to=_party(bill_to), currency=statement.currency, issue_date=statement.end,
        period_start=statement.start, period_end=statement.end, opening=statement.opening, rows=rows,
        closing=statement.closing, invoiced=statement.invoiced, credited=-statement.credited,
        received=statement.received, aging=tuple(statement.aging.items()),
        page_size=page_size_for(issuer.get("country"), issuer.get("page_size")))
