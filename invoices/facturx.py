"""Factur-X e-invoices: a PDF/A-3 that carries the invoice as EN 16931 XML (UN/CEFACT CII).

A party with `einvoice: factur-x` in the configuration gets its invoices and
credit notes this way: `invoices.render` lays the PDF out as PDF/A-3b, and
`embed` attaches `cii_xml(doc)` with the `factur-x` library, which checks it
against the Factur-X EN 16931 XSD and writes the Factur-X XMP metadata.

- `applies(doc)`: whether a document is produced as a Factur-X invoice: the
  party asked for it, and the document is an issued invoice or credit note
  (a draft has no number; a statement asks for nothing, so it is no invoice).
- `cii_xml(doc)`: the CrossIndustryInvoice, profile EN 16931
  (`urn:cen.eu:en16931:2017`), built with lxml from the printed document:
  the same lines, amounts and totals, to the cent.
- `embed(doc, pdf)`: the Factur-X PDF; its dates are the issue date, so the
  same document gives the same bytes.

What the XML says, and why:

- Tax: these are services the organization invoices without VAT. Every line
  and the one tax breakdown use VAT category O, "services outside scope of
  tax", with exemption reason code VATEX-EU-O, a tax amount of 0 and no rate
  (EN 16931 BR-O-01 to BR-O-14). Under category O no VAT identifier may be
  stated (BR-O-02), so the seller's tax id is its tax registration (BT-32,
  scheme FC) and legal registration (BT-30) identifier, and the buyer's its
  legal registration identifier (BT-47).
- Negative lines (subsidies, credits, adjustments) are lines with a negative
  quantity and a positive net price, hence a negative net amount, as
  EN 16931 allows (a price is never negative, BR-27).
- A line states its own quantity and unit price only when they give its
  amount exactly once rounded (a percentage line as quantity % of a base
  price per 100); otherwise it is 1 (or -1) times its amount.
- A credit note is type 381 with the amounts of the invoice it credits as
  positive numbers (the ledger keeps them negative), and names that invoice
  as the preceding invoice (BG-3, `InvoiceReferencedDocument`); an invoice
  that replaces another names it the same way. Invoices are type 380.
"""
from __future__ import annotations

import datetime as dt
import threading
from contextlib import contextmanager
from decimal import ROUND_HALF_UP, Decimal

from lxml import etree

from billing.documents import DocumentLine, InvoiceDocument
from billing.errors import BillingError
from billing.money import currency_quantum

FACTURX = "factur-x"
PROFILE = "en16931"
PDF_VARIANT = "pdf/a-3b"      # WeasyPrint's: the PDF the XML is embedded in
GUIDELINE = "urn:cen.eu:en16931:2017"
# UNTDID 1001: commercial invoice, credit note.
TYPE_CODES = {"invoice": "380", "credit_note": "381"}

NS = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
    "qdt": "urn:un:unece:uncefact:data:standard:QualifiedDataType:100",
    "udt": "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100",
}

# VAT category O: services outside the scope of tax (EN 16931 BR-O rules).
TAX_CATEGORY = "O"
EXEMPTION_CODE = "VATEX-EU-O"
EXEMPTION_TEXT = "Not subject to VAT"

# UN/ECE Recommendation 20 codes of the units the pricing models use; any other unit is counted in "one" (C62)
# and stays in the line's name.
UNIT_CODES = {"month": "MON", "months": "MON", "year": "ANN", "years": "ANN", "day": "DAY", "days": "DAY",
              "hour": "HUR", "hours": "HUR", "%": "P1"}
ONE = "C62"


class FacturXError(BillingError):
    """A document could not be produced as a Factur-X invoice; the message says what is missing."""


def applies(doc: InvoiceDocument) -> bool:
    """Whether `doc` is produced as a Factur-X invoice (PDF/A-3 with its XML)."""
    return (doc.bill_to.einvoice == FACTURX and doc.document_type in TYPE_CODES and not doc.is_draft
            and doc.number is not None)


# ---- the XML -----------------------------------------------------------------------------


def _el(parent, tag: str, text: str | None = None, **attrs) -> etree._Element:
    prefix, name = tag.split(":")
    element = etree.SubElement(parent, f"{{{NS[prefix]}}}{name}", {k: v for k, v in attrs.items()})
    if text is not None:
        element.text = text
    return element


def _date(parent, tag: str, day: dt.date, data_type: str = "udt") -> None:
    _el(_el(parent, tag), f"{data_type}:DateTimeString", day.strftime("%Y%m%d"), format="102")


def _number(value: Decimal) -> str:
    """A decimal as plain text, without exponent or trailing zeros beyond the unit ("1500", "0.125")."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


class _Amounts:
    """Amounts of one document as the XML states them: in the currency's minor unit, sign as EN 16931 has it."""

    def __init__(self, doc: InvoiceDocument):
        self.quantum = currency_quantum(doc.currency)
        self.sign = -1 if doc.document_type == "credit_note" else 1   # a credit note states what it credits

    def __call__(self, amount: Decimal) -> str:
        return format((amount * self.sign).quantize(self.quantum), "f")


def _line_quantity(line: DocumentLine, amount: Decimal, quantum: Decimal) -> tuple[Decimal, str, Decimal, Decimal]:
    """(billed quantity, unit code, net price, price base quantity) that give `amount`, the line's amount as the
    XML states it (on a credit note, the opposite of the ledger's)."""
    q, price, unit = line.quantity, line.unit_price, (line.unit or "").strip().lower()
    if q is not None and price is not None and q != 0:
        base = Decimal(100) if unit == "%" else Decimal(1)
        if price < 0:                              # a price is never negative: the quantity carries the sign
            q, price = -q, -price
        for billed in (q, -q):
            if (billed * price / base).quantize(quantum, ROUND_HALF_UP) == amount:
                return billed, UNIT_CODES.get(unit, ONE), price, base
    return (Decimal(1) if amount >= 0 else Decimal(-1)), ONE, abs(amount), Decimal(1)


def _address(parent, lines: tuple[str, ...], country: str) -> None:
    """A postal address: the first two lines as written, the rest on the third; the country as a code."""
    address = _el(parent, "ram:PostalTradeAddress")
    lines = tuple(l for l in lines if l.strip())
    for tag, text in zip(("ram:LineOne", "ram:LineTwo"), lines):
        _el(address, tag, text)
    if len(lines) > 2:
        _el(address, "ram:LineThree", ", ".join(lines[2:]))
    _el(address, "ram:CountryID", country)


def _email(parent, address: str | None) -> None:
    if address:
        _el(_el(parent, "ram:URIUniversalCommunication"), "ram:URIID", address, schemeID="EM")


def _seller(agreement, doc: InvoiceDocument) -> None:
    issuer = doc.issuer
    sponsor = issuer.fiscal_sponsor
    if not issuer.country:
        raise FacturXError("the issuer's country is not known (issuer.country in the configuration)")
    if not issuer.seller_tax_id:
        raise FacturXError("the seller's tax id is not known (issuer.tax_id or issuer.fiscal_sponsor.tax_id)")
    seller = _el(agreement, "ram:SellerTradeParty")
    _el(seller, "ram:Name", sponsor.name if sponsor else issuer.name)
    legal = _el(seller, "ram:SpecifiedLegalOrganization")
    _el(legal, "ram:ID", issuer.seller_tax_id)
    if sponsor:                                    # the project the sponsor invoices for
        _el(legal, "ram:TradingBusinessName", issuer.name)
    if issuer.email:
        _el(_el(_el(seller, "ram:DefinedTradeContact"), "ram:EmailURIUniversalCommunication"), "ram:URIID",
            issuer.email)
    _address(seller, sponsor.address if sponsor and sponsor.address else issuer.address, issuer.country)
    _email(seller, issuer.email)
    _el(_el(seller, "ram:SpecifiedTaxRegistration"), "ram:ID", issuer.seller_tax_id, schemeID="FC")


def _buyer(agreement, doc: InvoiceDocument) -> None:
    party = doc.bill_to
    if not party.country:
        raise FacturXError(f"the country of {party.name!r} is not known (billing_contact.country)")
    buyer = _el(agreement, "ram:BuyerTradeParty")
    _el(buyer, "ram:Name", party.legal_name or party.name)
    if party.tax_id or party.legal_name:
        legal = _el(buyer, "ram:SpecifiedLegalOrganization")
        if party.tax_id:
            _el(legal, "ram:ID", party.tax_id)
        if party.legal_name:
            _el(legal, "ram:TradingBusinessName", party.name)
    if party.attention or party.email:
        contact = _el(buyer, "ram:DefinedTradeContact")
        if party.attention:
            _el(contact, "ram:PersonName", party.attention)
        if party.email:
            _el(_el(contact, "ram:EmailURIUniversalCommunication"), "ram:URIID", party.email)
    _address(buyer, party.address, party.country)
    _email(buyer, party.email)


def _line_item(transaction, number: int, line: DocumentLine, amounts: _Amounts) -> None:
    item = _el(transaction, "ram:IncludedSupplyChainTradeLineItem")
    header = _el(item, "ram:AssociatedDocumentLineDocument")
    _el(header, "ram:LineID", str(number))
    if line.note:
        _el(_el(header, "ram:IncludedNote"), "ram:Content", line.note)
    product = _el(item, "ram:SpecifiedTradeProduct")
    _el(product, "ram:Name", line.description)
    for label, value in (("Section", line.section), ("Hub", line.hub), ("Cluster", line.cluster),
                         ("Component", line.component), ("Unit", line.unit)):
        if value:
            characteristic = _el(product, "ram:ApplicableProductCharacteristic")
            _el(characteristic, "ram:Description", label)
            _el(characteristic, "ram:Value", value)
    stated = Decimal(amounts(line.amount))
    quantity, unit_code, price, base = _line_quantity(line, stated, amounts.quantum)
    price_el = _el(_el(item, "ram:SpecifiedLineTradeAgreement"), "ram:NetPriceProductTradePrice")
    _el(price_el, "ram:ChargeAmount", _number(price))
    if base != 1:
        _el(price_el, "ram:BasisQuantity", _number(base), unitCode=unit_code)
    _el(_el(item, "ram:SpecifiedLineTradeDelivery"), "ram:BilledQuantity", _number(quantity), unitCode=unit_code)
    settlement = _el(item, "ram:SpecifiedLineTradeSettlement")
    tax = _el(settlement, "ram:ApplicableTradeTax")
    _el(tax, "ram:TypeCode", "VAT")
    _el(tax, "ram:CategoryCode", TAX_CATEGORY)
    _el(_el(settlement, "ram:SpecifiedTradeSettlementLineMonetarySummation"), "ram:LineTotalAmount",
        amounts(line.amount))


def _notes(document, doc: InvoiceDocument) -> None:
    texts = [(doc.reason, "AAI")] if doc.reason else []            # UNTDID 4451 AAI: general information
    texts += [(note, "AAI") for note in doc.notes]
    if doc.kind.payable and doc.issuer.payment_instructions:        # PMT: payment information
        texts.append((" ".join(doc.issuer.payment_instructions), "PMT"))
    for text, subject in texts:
        note = _el(document, "ram:IncludedNote")
        _el(note, "ram:Content", text)
        _el(note, "ram:SubjectCode", subject)


def _settlement(transaction, doc: InvoiceDocument, amounts: _Amounts) -> None:
    settlement = _el(transaction, "ram:ApplicableHeaderTradeSettlement")
    if doc.kind.payable:
        _el(settlement, "ram:PaymentReference", doc.number)
    _el(settlement, "ram:InvoiceCurrencyCode", doc.currency)
    tax = _el(settlement, "ram:ApplicableTradeTax")
    _el(tax, "ram:CalculatedAmount", amounts(Decimal(0)))
    _el(tax, "ram:TypeCode", "VAT")
    _el(tax, "ram:ExemptionReason", EXEMPTION_TEXT)
    _el(tax, "ram:BasisAmount", amounts(doc.subtotal))
    _el(tax, "ram:CategoryCode", TAX_CATEGORY)
    _el(tax, "ram:ExemptionReasonCode", EXEMPTION_CODE)
    period = _el(settlement, "ram:BillingSpecifiedPeriod")
    _date(period, "ram:StartDateTime", doc.period_start)
    _date(period, "ram:EndDateTime", doc.period_end)
    terms = _el(settlement, "ram:SpecifiedTradePaymentTerms")
    if doc.kind.payable:
        days = (doc.due_date - doc.issue_date).days
        _el(terms, "ram:Description", f"Due within {days} days of the invoice date, by {doc.due_date.isoformat()}")
        _date(terms, "ram:DueDateDateTime", doc.due_date)
    else:
        credited = f" {doc.corrects.number}" if doc.corrects else ""
        _el(terms, "ram:Description", f"Nothing to pay: this credit note credits invoice{credited}")
    totals = _el(settlement, "ram:SpecifiedTradeSettlementHeaderMonetarySummation")
    _el(totals, "ram:LineTotalAmount", amounts(doc.subtotal))
    _el(totals, "ram:TaxBasisTotalAmount", amounts(doc.subtotal))
    _el(totals, "ram:TaxTotalAmount", amounts(Decimal(0)), currencyID=doc.currency)
    _el(totals, "ram:GrandTotalAmount", amounts(doc.total))
    _el(totals, "ram:DuePayableAmount", amounts(doc.total))
    if doc.corrects is not None:
        preceding = _el(settlement, "ram:InvoiceReferencedDocument")
        _el(preceding, "ram:IssuerAssignedID", doc.corrects.number)
        if doc.corrects.issue_date:
            _date(preceding, "ram:FormattedIssueDateTime", doc.corrects.issue_date, "qdt")


def cii_xml(doc: InvoiceDocument) -> bytes:
    """The document as a Factur-X EN 16931 CrossIndustryInvoice (UTF-8 bytes)."""
    if doc.document_type not in TYPE_CODES:
        raise FacturXError(f"a {doc.kind.title.lower()} is not an invoice: no e-invoice is made for it")
    if doc.number is None or doc.is_draft:
        raise FacturXError("a draft has no number yet: no e-invoice is made for it")
    if doc.subtotal != doc.total or sum((l.amount for l in doc.lines), Decimal(0)) != doc.total:
        raise FacturXError(f"its lines add up to {sum((l.amount for l in doc.lines), Decimal(0))} and its subtotal "
                           f"is {doc.subtotal}, but its total is {doc.total}")
    amounts = _Amounts(doc)
    root = etree.Element(f"{{{NS['rsm']}}}CrossIndustryInvoice", nsmap=NS)
    context = _el(root, "rsm:ExchangedDocumentContext")
    _el(_el(context, "ram:GuidelineSpecifiedDocumentContextParameter"), "ram:ID", GUIDELINE)
    document = _el(root, "rsm:ExchangedDocument")
    _el(document, "ram:ID", doc.number)
    _el(document, "ram:TypeCode", TYPE_CODES[doc.document_type])
    _date(document, "ram:IssueDateTime", doc.issue_date)
    _notes(document, doc)
    transaction = _el(root, "rsm:SupplyChainTradeTransaction")
    for number, line in enumerate(doc.lines, 1):
        _line_item(transaction, number, line, amounts)
    agreement = _el(transaction, "ram:ApplicableHeaderTradeAgreement")
    if doc.bill_to.customer_reference:
        _el(agreement, "ram:BuyerReference", doc.bill_to.customer_reference)
    _seller(agreement, doc)
    _buyer(agreement, doc)
    if doc.bill_to.purchase_order:
        _el(_el(agreement, "ram:BuyerOrderReferencedDocument"), "ram:IssuerAssignedID", doc.bill_to.purchase_order)
    _el(transaction, "ram:ApplicableHeaderTradeDelivery")
    _settlement(transaction, doc, amounts)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


# ---- the PDF -----------------------------------------------------------------------------

# The factur-x library stamps the PDF's and the attachment's dates with the clock, and leaves WeasyPrint's
# /Producer in the document information while its XMP says "pypdf". PDF/A wants the two to agree and this
# project wants the same bytes for the same document: `_library_pinned` swaps the library's clock for the issue
# date and has its document information say what its XMP says, while it runs (one embedding at a time).
_LIBRARY_LOCK = threading.Lock()
XMP_PRODUCER = "pypdf"      # what the library's XMP names as the PDF's producer


@contextmanager
def _library_pinned(day: dt.date):
    from facturx import facturx as library

    real_clock, real_info = library.datetime, library._prepare_pdf_metadata_txt
    moment = dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)

    class IssueDay(real_clock):
        @classmethod
        def now(cls, tz=None):
            return moment if tz is not None else moment.replace(tzinfo=None)

    def info_as_in_xmp(pdf_metadata):
        info = {**real_info(pdf_metadata), "/Producer": XMP_PRODUCER}
        info.pop("/Keywords", None)       # the library's XMP has no pdf:Keywords
        return info

    with _LIBRARY_LOCK:
        library.datetime, library._prepare_pdf_metadata_txt = IssueDay, info_as_in_xmp
        try:
            yield
        finally:
            library.datetime, library._prepare_pdf_metadata_txt = real_clock, real_info


def pdf_metadata(doc: InvoiceDocument) -> dict[str, str]:
    """The PDF's title, author and subject, as the HTML's own metadata says them."""
    title = f"{doc.kind.title} {doc.number}"
    return {"title": title, "author": doc.issuer.name,
            "subject": f"{title} for {doc.bill_to.name}, {doc.period_label}"}


def embed(doc: InvoiceDocument, pdf: bytes, lang: str = "en-US") -> bytes:
    """The Factur-X PDF: `pdf` (rendered as PDF/A-3b) with the document's EN 16931 XML and Factur-X XMP.

    The library checks the XML against the Factur-X EN 16931 XSD first; an
    invalid XML raises `FacturXError` and nothing is produced.
    """
    import facturx

    xml = cii_xml(doc)
    try:
        with _library_pinned(doc.issue_date):
            return facturx.generate_from_binary(pdf, xml, flavor=FACTURX, level=PROFILE, check_xsd=True,
                                                pdf_metadata=pdf_metadata(doc), lang=lang)
    except Exception as exc:   # the library raises plain exceptions for an XML its XSD refuses
        raise FacturXError(f"the Factur-X XML was refused: {exc}") from exc
