"""Invoice rendering: text in the PDF, drafts, escaping, the URL fetcher, parallel rendering.

Fast and offline: every URL WeasyPrint asks for goes through the template-only
fetcher, which refuses anything that is not a file in invoices/templates/.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path

import pytest
from pypdf import PdfReader

from billing.documents import DocumentLine, InvoiceDocument, Issuer, Party
from invoices.render import (
    TEMPLATES_DIR,
    RefusedURL,
    RenderError,
    html_to_pdf_bytes,
    make_url_fetcher,
    render_html,
    render_many,
    render_pdf,
)

EVIL_NAME = "<script>alert(1)</script> & Co"


def make_doc(number: str | None = "INV-2022-0001", *, status: str = "finalized", name: str = "Example University",
             currency: str = "USD", extra_lines: int = 0) -> InvoiceDocument:
    issuer = Issuer(
        name="Open Hubs Collective",
        address=("1200 Example Avenue", "Berkeley, CA 94704"),
        email="billing@openhubs.example",
        website="https://openhubs.example",
        tax_id="EIN 12-3456789",
        payment_instructions=("Wire transfer to account 000123456789, routing 121000358.",),
    )
    bill_to = Party(id="example-u", name=name, email="ap@example.edu", address=("42 Campus Drive", "Springfield"))
    lines = [
        DocumentLine("Fees", "Research hub monthly fee", D("1500.00"), quantity=D("1"), unit="month",
                     unit_price=D("1500.00")),
        DocumentLine("Cloud costs", "Compute", D("1234.56"), hub="example-research", cluster="aws-us-west-2",
                     component="compute"),
        DocumentLine("Cloud costs", "Home storage", D("210.40"), quantity=D("1052"), unit="GB-month",
                     unit_price=D("0.2"), hub="example-research", cluster="aws-us-west-2", component="home storage"),
        DocumentLine("Cloud costs", "Object storage", D("18.07"), hub="example-staging", component="object storage",
                     note="Includes egress."),
    ]
    lines += [DocumentLine("Cloud costs", f"Compute, node pool {i}", D("12.34"), hub=f"hub-{i}", component="compute")
              for i in range(extra_lines)]
    lines.append(DocumentLine("Subsidies", "Grant subsidy (before tax)", D("-250.00")))
    if currency == "JPY":
        lines = [replace(l, amount=l.amount.quantize(D(1)), unit_price=None) for l in lines]
    subtotal = sum((l.amount for l in lines), D(0))
    return InvoiceDocument(
        issuer=issuer, bill_to=bill_to, number=number, status=status,
        issue_date=dt.date(2022, 2, 1), due_date=dt.date(2022, 3, 3),
        period_start=dt.date(2022, 1, 1), period_end=dt.date(2022, 1, 31), period_label="January 2022",
        currency=currency, lines=tuple(lines), subtotal=subtotal, total=subtotal,
        notes=("Cloud costs are passed through at cost.",), reference="example-u/2022-01",
    )


def pdf_text(path: Path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


@pytest.fixture(scope="module")
def final_pdf(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("final") / "INV-2022-0001.pdf"
    render_pdf(make_doc(), path)
    return path


# ---- content ------------------------------------------------------------------------------


def test_final_invoice_shows_number_party_amounts_and_totals(final_pdf):
    text = pdf_text(final_pdf)
    for expected in [
        "INVOICE", "INV-2022-0001", "Example University", "Open Hubs Collective", "EIN 12-3456789",
        "$1,500.00", "$1,234.56", "$210.40", "$18.07", "-$250.00",   # lines (babel: minus sign first)
        "$1,463.03",   # Cloud costs subtotal
        "$2,713.03",   # subtotal and total: 1500 + 1463.03 - 250
        "1,052", "GB-month", "$0.20",
        "Hub: example-research", "Component: compute", "Includes egress.",
        "Fees", "Cloud costs", "Subsidies", "Subtotal", "Total amount due",
        "February 1, 2022", "March 3, 2022", "January 2022", "Jan 1\u2009\u2013\u200931, 2022", "USD",
        "Cloud costs are passed through at cost.", "Wire transfer to account 000123456789",
        "Page 1 of 1",
    ]:
        assert expected in text, expected
    assert "DRAFT" not in text
    assert len(PdfReader(final_pdf).pages) == 1


def test_pdf_metadata_comes_from_the_document(final_pdf):
    meta = PdfReader(final_pdf).metadata
    assert meta.title == "Invoice INV-2022-0001"
    assert meta.author == "Open Hubs Collective"
    assert meta.creation_date.date() == dt.date(2022, 2, 1)
    assert meta.modification_date.date() == dt.date(2022, 2, 1)


@pytest.mark.parametrize("number,status", [(None, "draft"), ("INV-2022-0099", "draft"), (None, "finalized")])
def test_a_draft_says_draft_and_shows_no_number(tmp_path, number, status):
    path = tmp_path / "draft.pdf"
    render_pdf(make_doc(number, status=status), path)
    text = pdf_text(path)
    assert "DRAFT" in text
    assert "not a valid invoice" in text
    assert "INV-2022" not in text
    assert "example-u/2022-01" in text            # the draft's reference
    assert PdfReader(path).metadata.title.startswith("Draft invoice")


def test_long_invoice_continues_with_header_and_page_numbers_on_every_page(tmp_path):
    path = tmp_path / "long.pdf"
    render_pdf(make_doc(number=None, status="draft", extra_lines=70), path)
    pages = [p.extract_text() for p in PdfReader(path).pages]
    assert len(pages) >= 2
    for i, text in enumerate(pages, 1):
        assert f"Page {i} of {len(pages)}" in text
        assert "DESCRIPTION" in text and "AMOUNT" in text   # repeated table header
        assert "DRAFT" in text                              # watermark on every page
    assert "Total amount due" in pages[-1]


def test_amounts_use_the_currency_own_decimals_and_locale():
    html = render_html(make_doc(currency="JPY"))
    assert "¥1,500" in html and "¥1,500.00" not in html
    assert "-¥250" in html
    html_de = render_html(make_doc(), locale="de_DE")
    assert "1.500,00\xa0$" in html_de and "-250,00\xa0$" in html_de
    assert "1. Februar 2022" in html_de


# ---- escaping and the template environment ------------------------------------------------


def test_names_from_the_data_are_escaped(tmp_path):
    doc = make_doc(name=EVIL_NAME)
    html = render_html(doc)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in html
    path = tmp_path / "evil.pdf"
    render_pdf(doc, path)
    assert EVIL_NAME in pdf_text(path)


def test_documents_that_must_not_be_printed_are_refused():
    doc = make_doc()
    with pytest.raises(RenderError, match="not rounded"):
        render_html(replace(doc, lines=doc.lines[:-1] + (replace(doc.lines[-1], amount=D("-250.005")),)))
    with pytest.raises(RenderError, match="lines add up to"):
        render_html(replace(doc, subtotal=doc.subtotal + D("0.01"), total=doc.total + D("0.01")))
    with pytest.raises(RenderError, match="unknown currency"):
        render_html(replace(doc, currency="XYZ1"))


# ---- the URL fetcher ----------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "file:///etc/passwd",
    "http://example.com/x.png",
    "https://example.com/x.css",
    "ftp://example.com/font.ttf",
    "data:image/png;base64,iVBORw0KGgo=",
    "file://otherhost" + str(TEMPLATES_DIR / "invoice.css"),
    (TEMPLATES_DIR / "invoice.css").as_uri().replace("invoice.css", "../render.py"),
    (TEMPLATES_DIR / "invoice.css").as_uri().replace("invoice.css", "%2e%2e/render.py"),
    TEMPLATES_DIR.as_uri() + "/",
    TEMPLATES_DIR.as_uri() + "/missing.png",
])
def test_fetcher_refuses_everything_outside_the_templates_folder(url):
    fetcher = make_url_fetcher()
    with pytest.raises(RefusedURL):
        fetcher.fetch(url)
    assert fetcher.refused == [url]


def test_fetcher_serves_template_files():
    response = make_url_fetcher().fetch((TEMPLATES_DIR / "invoice.css").as_uri())
    assert response.content_type == "text/css"
    assert b"@page" in response.read()


def test_fetcher_does_not_follow_a_symlink_out_of_its_folder(tmp_path):
    root = tmp_path / "templates"
    root.mkdir()
    (root / "ok.css").write_text("p {}")
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (root / "link.css").symlink_to(secret)
    fetcher = make_url_fetcher(root)
    assert fetcher.fetch((root / "ok.css").as_uri()).read() == b"p {}"
    with pytest.raises(RefusedURL):
        fetcher.fetch((root / "link.css").as_uri())


@pytest.mark.parametrize("html", [
    '<img src="file:///etc/passwd">',
    '<img src="http://example.com/x.png">',
    '<link rel="attachment" href="file:///etc/passwd">',
    '<style>@import url("https://example.com/a.css");</style><p>x</p>',
    '<p style="background: url(file:///etc/hostname)">x</p>',
])
def test_a_document_referencing_outside_urls_fails_closed(html):
    fetcher = make_url_fetcher()
    with pytest.raises(RenderError, match="refused"):
        html_to_pdf_bytes(html, fetcher)
    assert fetcher.refused, "the fetcher was not asked (and so did not refuse) the outside URL"
    assert all(not url.startswith(TEMPLATES_DIR.as_uri()) for url in fetcher.refused)


def test_a_real_invoice_only_loads_files_from_the_templates_folder():
    fetcher = make_url_fetcher()
    html_to_pdf_bytes(render_html(make_doc()), fetcher)
    assert fetcher.requested, "the stylesheet should go through the fetcher"
    assert all(url.startswith(TEMPLATES_DIR.as_uri() + "/") for url in fetcher.requested)
    assert fetcher.refused == []


# ---- determinism and atomic writes --------------------------------------------------------


def test_same_document_gives_the_same_text_and_bytes(tmp_path, final_pdf, monkeypatch):
    # fontTools stamps font subsets with the clock; move the clock to prove it is pinned.
    from fontTools.misc import timeTools

    class LaterClock:
        @staticmethod
        def time():
            return 2_000_000_000.0

    monkeypatch.setattr(timeTools, "time", LaterClock)
    again = tmp_path / "again.pdf"
    render_pdf(make_doc(), again)
    assert pdf_text(again) == pdf_text(final_pdf)
    assert again.read_bytes() == final_pdf.read_bytes()
    assert "SOURCE_DATE_EPOCH" not in os.environ or os.environ["SOURCE_DATE_EPOCH"] != "1643673600"


def test_render_pdf_replaces_atomically_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "out" / "inv.pdf"
    path.parent.mkdir()
    path.write_bytes(b"old")
    bad = replace(make_doc(), subtotal=D("1.00"))
    with pytest.raises(RenderError):
        render_pdf(bad, path)
    assert path.read_bytes() == b"old"
    render_pdf(make_doc(), path)
    assert path.read_bytes().startswith(b"%PDF-")
    assert [p.name for p in path.parent.iterdir()] == ["inv.pdf"]


# ---- many invoices ------------------------------------------------------------------------


def test_render_many_in_two_processes_and_name_the_failed_invoice(tmp_path):
    numbers = [f"INV-2022-{n:04d}" for n in range(11, 15)]
    jobs = [(make_doc(n, name=f"Community {n}"), tmp_path / f"{n}.pdf") for n in numbers]
    bad = replace(make_doc("INV-2022-0099"), total=D("0.001"))
    with pytest.raises(RenderError, match="INV-2022-0099") as info:
        render_many(jobs + [(bad, tmp_path / "bad.pdf")], workers=2)
    assert "1 of 5" in str(info.value)
    for n in numbers:
        text = pdf_text(tmp_path / f"{n}.pdf")
        assert n in text and f"Community {n}" in text
        assert not any(other in text for other in numbers if other != n)
    assert not (tmp_path / "bad.pdf").exists()


def test_render_many_in_process_and_refuses_duplicate_targets(tmp_path):
    render_many([(make_doc("INV-2022-0021"), tmp_path / "a.pdf")], workers=4)   # one job: in-process
    assert "INV-2022-0021" in pdf_text(tmp_path / "a.pdf")
    with pytest.raises(ValueError, match="two invoices"):
        render_many([(make_doc("A"), tmp_path / "x.pdf"), (make_doc("B"), tmp_path / "x.pdf")])
    render_many([])


# ---- document types, parties, checks on the new fields ------------------------------------


def test_a_percentage_quantity_prints_as_people_write_it():
    doc = make_doc()
    doc = replace(doc, lines=doc.lines[:-1] + (replace(doc.lines[-1], quantity=D("12.50"), unit="%"),))
    html = render_html(doc)
    assert "12.5%" in html and "12.5 %" not in html and "12.50" not in html


def test_a_document_issued_and_later_credited_prints_as_issued(tmp_path):
    for status in ("credited", "voided", "replaced"):
        path = tmp_path / f"{status}.pdf"
        render_pdf(make_doc(status=status), path)
        text = pdf_text(path)
        assert "DRAFT" not in text and "INV-2022-0001" in text and "Please quote invoice number" in text


def zero_total(doc: InvoiceDocument) -> InvoiceDocument:
    """The document with a last line that brings its total to zero (a fully funded month)."""
    doc = replace(doc, lines=doc.lines + (DocumentLine("Subsidies", "Paid by a grant", -doc.total),))
    return replace(doc, subtotal=D("0.00"), total=D("0.00"))


def negated(doc: InvoiceDocument) -> InvoiceDocument:
    return replace(doc, lines=tuple(replace(l, amount=-l.amount) for l in doc.lines), subtotal=-doc.subtotal,
                   total=-doc.total)


def test_each_document_type_has_its_title_and_its_footer(tmp_path):
    for document_type, heading, footer, doc in [
            ("credit_note", "CREDIT NOTE", "Credit note INV-2022-0001", negated(make_doc())),
            ("statement", "STATEMENT", "Statement INV-2022-0001", zero_total(make_doc()))]:
        path = tmp_path / f"{document_type}.pdf"
        render_pdf(replace(doc, document_type=document_type), path)
        text = pdf_text(path)
        assert heading in text and footer in text and "Payment instructions".upper() not in text
        assert PdfReader(path).metadata.title == footer


def test_party_and_correction_fields_are_escaped():
    from billing.documents import DocumentRef, FiscalSponsor, Funding

    doc = replace(make_doc(), reason=EVIL_NAME, corrects=DocumentRef(EVIL_NAME),
                  funding=Funding(EVIL_NAME, EVIL_NAME, D("1.00"), EVIL_NAME),
                  bill_to=Party("x", "X", legal_name=EVIL_NAME, tax_id=EVIL_NAME, purchase_order=EVIL_NAME,
                                customer_reference=EVIL_NAME, attention=EVIL_NAME),
                  issuer=replace(make_doc().issuer, fiscal_sponsor=FiscalSponsor(EVIL_NAME, (EVIL_NAME,), EVIL_NAME),
                                 tax_id=None))
    html = render_html(doc)
    assert "<script>" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co") >= 12


def test_document_type_page_size_and_split_are_checked():
    doc = make_doc()
    with pytest.raises(RenderError, match="unknown document type 'receipt'"):
        render_html(replace(doc, document_type="receipt"))
    with pytest.raises(RenderError, match="unknown page size 'legal'"):
        render_html(replace(doc, page_size="legal"))
    with pytest.raises(RenderError, match="a statement says nothing is due, but its total is 2713.03 USD"):
        render_html(replace(doc, document_type="statement"))
    with pytest.raises(RenderError, match="a credit note credits, but its total is 2713.03 USD"):
        render_html(replace(doc, document_type="credit_note"))
    last = doc.lines[-1]       # -250.00
    for fees, cloud, problem in [(D("-100.00"), D("-149.00"), "not its amount"),
                                 (D("-100.001"), D("-149.999"), "not rounded"), (D("-250.00"), None, "only one part")]:
        bad = replace(doc, lines=doc.lines[:-1] + (replace(last, fees_part=fees, cloud_part=cloud),))
        with pytest.raises(RenderError, match=problem):
            render_html(bad)
