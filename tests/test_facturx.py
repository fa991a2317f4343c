"""Factur-X e-invoices: the EN 16931 XML, its amounts against the ledger's, the PDF/A-3 it is embedded in.

The documents are the gallery's (`document_samples`): priced by the real
pricing models and built by the ledger, with the party asking for Factur-X.
Offline: the XML is checked against the factur-x library's own XSD.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import re
from decimal import Decimal as D
from pathlib import Path

import facturx
import pytest
from lxml import etree
from pypdf import PdfReader

from billing.config import parse_organization
from billing.documents import DocumentLine, document_for
from billing.errors import ConfigError
from billing.ledger import build_invoices
from billing.pricing import price_community
from billing.usage import MonthUsage
from document_samples import (COSTS, MONTH, credit_note_for, gallery_org_data, month_invoices, replacement_for,
                              with_adjustments)
from invoices import facturx as fx
from invoices.render import RenderError, render_many, render_pdf

NS = fx.NS


def factur_x(invoice, country="US"):
    """The ledger document of a party that asked for Factur-X (as the ledger snapshots it)."""
    return dataclasses.replace(invoice, bill_to={**invoice.bill_to, "einvoice": "factur-x", "country": country})


@pytest.fixture(scope="module")
def ledger_docs(tmp_path_factory):
    """Finalized ledger documents of Factur-X parties: invoices, one with a grant line, a funder's, a credit note,
    its replacement, and an invoice carrying prior-period adjustments (one negative)."""
    _, docs = month_invoices(tmp_path_factory.mktemp("org"))
    lakeshore = factur_x(docs["lakeshore"])
    credit = credit_note_for(lakeshore, "OHC-CN-2022-0001", "The education fee was charged at the wrong tier")
    return {
        "invoice": lakeshore,
        "funded": factur_x(docs["kilimanjaro"], "TZ"),
        "funder": factur_x(docs["gcg"]),
        "credit_note": credit,
        "replacement": replacement_for(lakeshore, credit, "OHC-2022-0110", "Corrected fee", D("900.00")),
        "adjusted": with_adjustments(lakeshore, "OHC-2022-0120"),
    }


def xml_of(invoice) -> etree._Element:
    return etree.fromstring(fx.cii_xml(document_for(invoice)))


def one(root, path: str) -> str:
    [found] = root.xpath(path, namespaces=NS)
    return found.text


def amount(root, path: str) -> D:
    return D(one(root, path))


TOTALS = "//ram:SpecifiedTradeSettlementHeaderMonetarySummation/"


# ---- the XML --------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["invoice", "funded", "funder", "credit_note", "replacement", "adjusted"])
def test_the_xml_is_valid_en16931_for_the_factur_x_library(ledger_docs, which):
    xml = fx.cii_xml(document_for(ledger_docs[which]))
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931") is True
    root = etree.fromstring(xml)
    assert one(root, "//ram:GuidelineSpecifiedDocumentContextParameter/ram:ID") == "urn:cen.eu:en16931:2017"
    assert facturx.get_level(root, "factur-x") == "en16931"


@pytest.mark.parametrize("which", ["invoice", "funded", "funder", "credit_note", "replacement", "adjusted"])
def test_amounts_are_the_ledger_amounts_to_the_cent(ledger_docs, which):
    invoice = ledger_docs[which]
    sign = -1 if invoice.document_type == "credit_note" else 1      # a credit note states what it credits
    root = xml_of(invoice)
    lines = [D(e.text) for e in root.xpath("//ram:SpecifiedTradeSettlementLineMonetarySummation/ram:LineTotalAmount",
                                           namespaces=NS)]
    assert lines == [sign * l.amount for l in invoice.lines]
    assert sum(lines) == amount(root, TOTALS + "ram:LineTotalAmount") == sign * invoice.subtotal
    assert amount(root, TOTALS + "ram:TaxBasisTotalAmount") == sign * invoice.subtotal
    assert amount(root, TOTALS + "ram:TaxTotalAmount") == 0
    assert amount(root, TOTALS + "ram:GrandTotalAmount") == amount(root, TOTALS + "ram:DuePayableAmount") \
        == sign * invoice.total
    assert amount(root, "//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax/ram:BasisAmount") \
        == sign * invoice.total
    assert one(root, "//ram:InvoiceCurrencyCode") == invoice.currency
    # Every amount has exactly the currency's two decimals.
    for text in root.xpath("//ram:LineTotalAmount/text() | //ram:GrandTotalAmount/text()", namespaces=NS):
        assert re.fullmatch(r"-?\d+\.\d\d", text), text


def test_each_line_states_a_quantity_and_price_that_give_its_amount(ledger_docs):
    for invoice in ledger_docs.values():
        for item in xml_of(invoice).xpath("//ram:IncludedSupplyChainTradeLineItem", namespaces=NS):
            quantity = D(one(item, ".//ram:BilledQuantity"))
            price = D(one(item, ".//ram:NetPriceProductTradePrice/ram:ChargeAmount"))
            base = item.xpath(".//ram:NetPriceProductTradePrice/ram:BasisQuantity/text()", namespaces=NS)
            total = D(one(item, ".//ram:LineTotalAmount"))
            assert price >= 0                                          # EN 16931 BR-27
            assert (quantity * price / D(base[0] if base else 1)).quantize(D("0.01")) == total


def test_quantities_units_and_percentages_are_kept_when_they_give_the_amount(ledger_docs):
    doc = document_for(ledger_docs["invoice"])
    lines = (DocumentLine("Fees", "Uplift", D("100.00"), quantity=D("12.5"), unit="%", unit_price=D("800")),
             DocumentLine("Cloud", "Home storage", D("210.40"), quantity=D("1052"), unit="GB-month",
                          unit_price=D("0.2")),
             DocumentLine("Fees", "Prorated fee", D("333.33"), quantity=D("10"), unit="days",
                          unit_price=D("33.3333")),
             DocumentLine("Credits", "Goodwill credit", D("-50.00"), quantity=D("1"), unit="month",
                          unit_price=D("-50.00")))
    doc = dataclasses.replace(doc, lines=lines, subtotal=D("593.73"), total=D("593.73"))
    xml = fx.cii_xml(doc)
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931") is True
    stated = [(one(i, ".//ram:BilledQuantity"), i.xpath(".//ram:BilledQuantity/@unitCode", namespaces=NS)[0],
               one(i, ".//ram:ChargeAmount"),
               (i.xpath(".//ram:BasisQuantity/text()", namespaces=NS) or [None])[0])
              for i in etree.fromstring(xml).xpath("//ram:IncludedSupplyChainTradeLineItem", namespaces=NS)]
    assert stated == [("12.5", "P1", "800", "100"),        # 12.5 % of 800 per 100 %
                      ("1052", "C62", "0.2", None),        # a unit with no UN/ECE code is counted in "one"
                      ("10", "DAY", "33.3333", None),
                      ("-1", "MON", "50", None)]           # the sign on the quantity, never on the price


def test_a_grant_line_is_a_negative_line_with_a_positive_price(ledger_docs):
    invoice = ledger_docs["funded"]
    [grant] = [l for l in invoice.lines if l.kind == "subsidy"]
    assert grant.amount < 0
    items = xml_of(invoice).xpath("//ram:IncludedSupplyChainTradeLineItem", namespaces=NS)
    item = items[invoice.lines.index(grant)]
    assert D(one(item, ".//ram:LineTotalAmount")) == grant.amount
    assert D(one(item, ".//ram:BilledQuantity")) < 0 < D(one(item, ".//ram:ChargeAmount"))


def test_tax_is_category_o_outside_the_scope_of_vat_with_no_vat_ids(ledger_docs):
    root = xml_of(ledger_docs["invoice"])
    assert set(root.xpath("//ram:CategoryCode/text()", namespaces=NS)) == {"O"}
    assert not root.xpath("//ram:RateApplicablePercent", namespaces=NS)               # BR-O-05
    header_tax = "//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax/"
    assert one(root, header_tax + "ram:ExemptionReasonCode") == "VATEX-EU-O"           # BR-O-10
    assert amount(root, header_tax + "ram:CalculatedAmount") == 0                      # BR-O-09
    assert not root.xpath("//ram:SpecifiedTaxRegistration/ram:ID[@schemeID='VA']", namespaces=NS)   # BR-O-02
    seller = "//ram:SellerTradeParty/"
    assert one(root, seller + "ram:Name") == "Commons Fiscal Sponsorship, Inc."       # the seller of record
    assert one(root, seller + "ram:SpecifiedLegalOrganization/ram:ID") == "EIN 12-3456789"
    assert one(root, seller + "ram:PostalTradeAddress/ram:CountryID") == "US"


def test_buyer_reference_purchase_order_and_due_date(ledger_docs):
    invoice = ledger_docs["invoice"]
    root = xml_of(invoice)
    assert one(root, "//rsm:ExchangedDocument/ram:TypeCode") == "380"
    assert one(root, "//rsm:ExchangedDocument/ram:ID") == invoice.number
    assert one(root, "//ram:BuyerTradeParty/ram:Name") == "Board of Regents of Lakeshore State University"
    assert one(root, "//ram:BuyerTradeParty/ram:PostalTradeAddress/ram:CountryID") == "US"
    assert one(root, "//ram:BuyerReference") == "Dept. of Statistics, project 22-117"
    assert one(root, "//ram:BuyerOrderReferencedDocument/ram:IssuerAssignedID") == "4500123456"
    assert one(root, "//ram:DueDateDateTime/udt:DateTimeString") == invoice.due_date.strftime("%Y%m%d")
    assert one(root, "//ram:BillingSpecifiedPeriod/ram:StartDateTime/udt:DateTimeString") == "20220501"
    assert one(root, "//ram:BillingSpecifiedPeriod/ram:EndDateTime/udt:DateTimeString") == "20220531"


def test_a_credit_note_is_type_381_and_names_the_invoice_it_credits(ledger_docs):
    credit, original = ledger_docs["credit_note"], ledger_docs["invoice"]
    root = xml_of(credit)
    assert one(root, "//rsm:ExchangedDocument/ram:TypeCode") == "381"
    assert one(root, "//ram:InvoiceReferencedDocument/ram:IssuerAssignedID") == original.number
    assert one(root, "//ram:InvoiceReferencedDocument/ram:FormattedIssueDateTime/qdt:DateTimeString") \
        == original.issue_date.strftime("%Y%m%d")
    assert amount(root, TOTALS + "ram:GrandTotalAmount") == original.total > 0
    first = root.xpath("//ram:IncludedSupplyChainTradeLineItem", namespaces=NS)[0]     # the fee: 1 month at its price
    assert one(first, ".//ram:BilledQuantity") == "1" and one(first, ".//ram:LineTotalAmount") == "1000.00"
    assert first.xpath(".//ram:BilledQuantity/@unitCode", namespaces=NS) == ["MON"]
    assert "wrong tier" in " ".join(root.xpath("//rsm:ExchangedDocument/ram:IncludedNote/ram:Content/text()",
                                               namespaces=NS))


def test_a_replacement_invoice_names_the_invoice_it_replaces(ledger_docs):
    root = xml_of(ledger_docs["replacement"])
    assert one(root, "//rsm:ExchangedDocument/ram:TypeCode") == "380"
    assert one(root, "//ram:InvoiceReferencedDocument/ram:IssuerAssignedID") == ledger_docs["invoice"].number


def test_what_is_not_an_issued_invoice_gets_no_e_invoice(ledger_docs, tmp_path):
    invoice = ledger_docs["invoice"]
    draft = dataclasses.replace(invoice, status="draft", number=None)
    statement = dataclasses.replace(invoice, document_type="statement", lines=())
    plain = dataclasses.replace(invoice, bill_to={k: v for k, v in invoice.bill_to.items() if k != "einvoice"})
    assert fx.applies(document_for(invoice)) and fx.applies(document_for(ledger_docs["credit_note"]))
    for doc in (draft, statement, plain):
        assert not fx.applies(document_for(doc))
    with pytest.raises(fx.FacturXError, match="draft"):
        fx.cii_xml(document_for(draft))
    render_pdf(document_for(draft), tmp_path / "draft.pdf")
    reader = PdfReader(tmp_path / "draft.pdf")
    assert "/AF" not in reader.trailer["/Root"] and reader.xmp_metadata is None


def test_a_buyer_without_a_known_country_fails_naming_the_invoice(ledger_docs, tmp_path):
    invoice = ledger_docs["invoice"]
    unknown = dataclasses.replace(invoice, bill_to={k: v for k, v in invoice.bill_to.items() if k != "country"})
    with pytest.raises(RenderError, match=r"invoice OHC-2022-0101: .*country of 'Lakeshore State University'"):
        render_pdf(document_for(unknown), tmp_path / "x.pdf")
    assert not (tmp_path / "x.pdf").exists()


# ---- the PDF --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def facturx_pdf(ledger_docs, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pdf") / "OHC-2022-0101.pdf"
    render_pdf(document_for(ledger_docs["invoice"]), path)
    return path


def xmp_text(reader: PdfReader) -> str:
    return reader.xmp_metadata.stream.get_data().decode()


def test_the_pdf_is_pdf_a_3b_with_factur_x_metadata(facturx_pdf):
    reader = PdfReader(facturx_pdf)
    text = xmp_text(reader)
    xmp = etree.fromstring(text.encode())
    assert xmp.xpath("//pdfaid:part/text()", namespaces={"pdfaid": "http://www.aiim.org/pdfa/ns/id/"}) == ["3"]
    assert "<pdfaid:part>3</pdfaid:part>" in text and "<pdfaid:conformance>B</pdfaid:conformance>" in text
    assert "<fx:ConformanceLevel>EN 16931</fx:ConformanceLevel>" in text
    assert "<fx:DocumentFileName>factur-x.xml</fx:DocumentFileName>" in text
    root = reader.trailer["/Root"]
    assert "/OutputIntents" in root                                          # sRGB, from WeasyPrint's PDF/A
    [filespec] = [f.get_object() for f in root["/AF"]]
    assert filespec["/AFRelationship"] == "/Data" and filespec["/F"] == "factur-x.xml"
    # What the document information says, the XMP says too (PDF/A).
    info = reader.metadata
    assert f"<pdf:Producer>{info['/Producer']}</pdf:Producer>" in text
    assert f"<rdf:li xml:lang=\"x-default\">{info['/Title']}</rdf:li>" in text
    assert "/Keywords" not in info
    assert info["/CreationDate"] == "D:20220601000000+00'00'"               # the issue date, not the clock


def test_the_embedded_xml_comes_back_out_of_the_pdf(facturx_pdf, ledger_docs):
    name, xml = facturx.get_xml_from_pdf(facturx_pdf.read_bytes(), check_xsd=True)
    assert name == "factur-x.xml"
    assert xml == fx.cii_xml(document_for(ledger_docs["invoice"]))
    root = etree.fromstring(xml)
    assert amount(root, TOTALS + "ram:GrandTotalAmount") == ledger_docs["invoice"].total


def test_the_pdf_a_prints_what_the_ordinary_pdf_prints(facturx_pdf, ledger_docs, tmp_path):
    invoice = ledger_docs["invoice"]
    plain = dataclasses.replace(invoice, bill_to={k: v for k, v in invoice.bill_to.items() if k != "einvoice"})
    render_pdf(document_for(plain), tmp_path / "plain.pdf")
    text = lambda path: [page.extract_text() for page in PdfReader(path).pages]  # noqa: E731
    assert text(facturx_pdf) == text(tmp_path / "plain.pdf")
    assert "3,911.45" in text(facturx_pdf)[0]


def test_the_same_document_gives_the_same_bytes_whatever_the_clock(facturx_pdf, ledger_docs, tmp_path, monkeypatch):
    from facturx import facturx as library
    from fontTools.misc import timeTools

    class Later(library.datetime):
        @classmethod
        def now(cls, tz=None):
            return dt.datetime(2031, 3, 4, 5, 6, 7, tzinfo=tz)

    class LaterClock:
        @staticmethod
        def time():
            return 2_000_000_000.0

    monkeypatch.setattr(library, "datetime", Later)
    monkeypatch.setattr(timeTools, "time", LaterClock)
    again = tmp_path / "again.pdf"
    render_pdf(document_for(ledger_docs["invoice"]), again)
    assert again.read_bytes() == facturx_pdf.read_bytes()
    assert library.datetime is Later                     # the library's clock is given back


def test_a_credit_note_pdf_carries_its_381_xml(ledger_docs, tmp_path):
    path = tmp_path / "OHC-CN-2022-0001.pdf"
    render_pdf(document_for(ledger_docs["credit_note"]), path)
    _, xml = facturx.get_xml_from_pdf(path.read_bytes(), check_xsd=True)
    assert one(etree.fromstring(xml), "//rsm:ExchangedDocument/ram:TypeCode") == "381"


# ---- from the configuration to the PDF --------------------------------------------------------


def org_data(**lakeshore) -> dict:
    data = copy.deepcopy(gallery_org_data())
    data["communities"][0].update(lakeshore)
    return data


def test_einvoice_goes_from_the_configuration_through_the_ledger_snapshot_to_the_pdf(tmp_path):
    org = parse_organization(org_data(einvoice="factur-x"), "org.yaml", tmp_path)
    assert org.community("lakeshore").einvoice == "factur-x" and org.community("kilimanjaro").einvoice == "none"
    charges = {c.id: price_community(org, c, MONTH, COSTS, MonthUsage("memory")) for c in org.communities}
    built = {i.party_id: i for i in build_invoices(org, MONTH, charges, "fp", issue_date=MONTH.end)}
    assert built["lakeshore"].bill_to["einvoice"] == "factur-x"
    assert built["lakeshore"].bill_to["country"] == "US"                 # from the address's last line
    assert "einvoice" not in built["volta"].bill_to and "country" not in built["volta"].bill_to
    jobs = []
    for pid, number in (("lakeshore", "OHC-2022-0101"), ("volta", "OHC-2022-0102")):
        doc = document_for(dataclasses.replace(built[pid], status="finalized", number=number))
        jobs.append((doc, tmp_path / f"{number}.pdf"))
    render_many(jobs, workers=1)
    _, xml = facturx.get_xml_from_pdf((tmp_path / "OHC-2022-0101.pdf").read_bytes(), check_xsd=False)
    assert amount(etree.fromstring(xml), TOTALS + "ram:GrandTotalAmount") == built["lakeshore"].total
    assert PdfReader(tmp_path / "OHC-2022-0102.pdf").xmp_metadata is None    # an ordinary PDF


def test_a_funder_can_ask_for_factur_x_and_an_explicit_country_wins(tmp_path):
    data = org_data(billing_contact={"name": "AP", "address": ["Somewhere"], "country": "CA"}, einvoice="factur-x")
    data["funders"][0]["einvoice"] = "factur-x"
    org = parse_organization(data, "org.yaml", tmp_path)
    assert org.funder("gcg").einvoice == "factur-x"
    assert org.community("lakeshore").billing_contact.country_code == "CA"


def test_an_unknown_einvoice_format_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        parse_organization(org_data(einvoice="xyz"), "org.yaml", tmp_path)
    assert ("org.yaml: communities[0] (lakeshore).einvoice: unknown e-invoice format 'xyz'; known: none, factur-x"
            in str(err.value))


def test_factur_x_needs_the_countries_and_the_sellers_tax_id(tmp_path):
    data = org_data(einvoice="factur-x",
                    billing_contact={"name": "AP", "address": ["400 Lakeshore Drive", "Duluth, MN 55812", "USA"]})
    del data["issuer"]["country"]
    del data["issuer"]["fiscal_sponsor"]["tax_id"]
    with pytest.raises(ConfigError) as err:
        parse_organization(data, "org.yaml", tmp_path)
    problems = err.value.problems
    assert any(p.startswith("org.yaml: issuer.country: communities[0] (lakeshore) has einvoice: factur-x")
               for p in problems)
    assert any(p.startswith("org.yaml: issuer.fiscal_sponsor.tax_id:") for p in problems)
    assert any("communities[0] (lakeshore).billing_contact.country:" in p and "'USA' is not a country name" in p
               for p in problems)


def test_a_currency_with_three_decimals_cannot_be_factur_x(tmp_path):
    data = org_data(einvoice="factur-x", currency="KWD")
    with pytest.raises(ConfigError, match=r"communities\[0\] \(lakeshore\)\.einvoice: factur-x states amounts with "
                                          r"at most 2 decimals"):
        parse_organization(data, "org.yaml", tmp_path)
