"""Page layout: the totals never leave their lines, a typical invoice fits on one page, the paper follows the issuer.

Documents of 1 to 40 lines are rendered with everything a busy invoice
carries (a fiscal sponsor, a purchase order, a customer's legal name and tax
id, a funder's part, notes, two-line cloud lines with split notes) and read
back page by page with pypdf.
"""
from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal as D

import pytest
from pypdf import PdfReader

from billing.documents import (DocumentLine, FiscalSponsor, Funding, InvoiceDocument, Issuer, Party, page_size_for)
from invoices.render import render_many, render_pdf

LETTER = (612, 792)
A4 = (595, 842)


def busy_line(i: int) -> DocumentLine:
    """Line i of a busy invoice: a fee first, then cloud costs with details and notes, a subsidy every 9th."""
    if i == 0:
        return DocumentLine("Service fees", "Monthly service fee (Research tier)", D("1500.00"), quantity=D(1),
                            unit="month", unit_price=D("1500.00"))
    if i % 9 == 8:
        return DocumentLine("Subsidies", f"Paid by Global Communities Grant (CZI EOSS-5-2022-GC-0417): 10% of cloud "
                                         f"costs, part {i}", D("-25.00"), quantity=D(10), unit="%")
    return DocumentLine("Cloud costs", f"Core services, hub research-{i}: share of shared cluster latam-{i % 3}",
                        D("100.00") + i, hub=f"research-{i}", cluster=f"latam-{i % 3}", component="core",
                        note=f"split by memory requested (GiB-hours): {i + 10}.25% of latam-{i % 3} overhead")


def busy_document(n_lines: int, page_size: str = "letter", number: str = "OHC-2022-0042") -> InvoiceDocument:
    lines = tuple(busy_line(i) for i in range(n_lines))
    order = ["Service fees", "Cloud costs", "Subsidies"]
    lines = tuple(sorted(lines, key=lambda l: order.index(l.section)))
    total = sum((l.amount for l in lines), D(0))
    return InvoiceDocument(
        issuer=Issuer("Open Hubs Collaborative", ("1234 Mission Street, Suite 500", "San Francisco, CA 94103",
                                                  "United States"),
                      "billing@openhubs.example.org", "https://openhubs.example.org", None,
                      ("Pay by ACH or wire transfer to Commons Fiscal Sponsorship, Inc.",
                       "Bank: Example Community Bank, routing 000000000, account 0000000000 (SWIFT EXCBUS00)"),
                      FiscalSponsor("Commons Fiscal Sponsorship, Inc.", (), "EIN 12-3456789")),
        bill_to=Party("lakeshore", "Lakeshore State University", "ap@lakeshore.example.edu",
                      ("Department of Statistics", "400 Lakeshore Drive", "Duluth, MN 55812", "United States"),
                      attention="Dana Whitfield", legal_name="Board of Regents of Lakeshore State University",
                      tax_id="EIN 41-6007162", purchase_order="4500123456",
                      customer_reference="Dept. of Statistics, project 22-117"),
        number=number, status="finalized", issue_date=dt.date(2022, 6, 1), due_date=dt.date(2022, 7, 1),
        period_start=dt.date(2022, 5, 1), period_end=dt.date(2022, 5, 31), period_label="May 2022",
        currency="USD", lines=lines, subtotal=total, total=total,
        notes=("Cloud costs are passed through at cost.", "Shared clusters are split by memory requested."),
        page_size=page_size, funding=Funding("Global Communities Grant", "CZI EOSS-5-2022-GC-0417", D("25.00"),
                                             "OHC-2022-0050"))


def pages_of(path) -> list[str]:
    return [page.extract_text() for page in PdfReader(path).pages]


LINE_AMOUNT = re.compile(r"^(Monthly service fee|Core services, hub|Paid by Global)", re.MULTILINE)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Busy documents of 1..40 lines on Letter (the shorter paper), rendered in parallel."""
    folder = tmp_path_factory.mktemp("layout")
    jobs = [(busy_document(n), folder / f"{n:02d}.pdf") for n in range(1, 41)]
    render_many(jobs)
    return {n: pages_of(folder / f"{n:02d}.pdf") for n in range(1, 41)}


@pytest.mark.parametrize("n", range(1, 41))
def test_the_totals_are_on_a_page_with_lines(rendered, n):
    pages = rendered[n]
    assert sum(len(LINE_AMOUNT.findall(text)) for text in pages) == n      # every line is printed once
    for label in ("Subtotal", "Total amount due"):
        on = [i for i, text in enumerate(pages) if re.search(rf"^{label}", text, re.MULTILINE)]
        assert len(on) == 1, (label, on)
        assert LINE_AMOUNT.search(pages[on[0]]), f"{n} lines: {label!r} is on page {on[0] + 1} without any line"


def test_every_page_has_its_number_the_document_number_and_the_table_header(rendered):
    for n, pages in rendered.items():
        for i, text in enumerate(pages, 1):
            assert f"Page {i} of {len(pages)}" in text
            assert "Invoice OHC-2022-0042" in text                 # the footer, on every page
            if LINE_AMOUNT.search(text):
                assert "DESCRIPTION" in text and "AMOUNT" in text  # the table header, repeated


def test_a_dozen_lines_fit_on_one_page(rendered):
    assert len(rendered[12]) == 1
    assert all(len(rendered[n]) == 1 for n in range(1, 13))


def test_a_dozen_lines_fit_on_one_a4_page(tmp_path):
    path = tmp_path / "a4.pdf"
    render_pdf(busy_document(12, "a4"), path)
    assert len(pages_of(path)) == 1


@pytest.mark.parametrize("page_size,mediabox", [("letter", LETTER), ("a4", A4)])
def test_the_page_size_is_the_document_s(tmp_path, page_size, mediabox):
    path = tmp_path / "doc.pdf"
    render_pdf(busy_document(3, page_size), path)
    box = PdfReader(path).pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == mediabox


@pytest.mark.parametrize("country,override,expected", [
    ("US", None, "letter"), ("CA", None, "letter"), ("MX", None, "letter"), ("PH", None, "letter"),
    ("CL", None, "letter"), ("CO", None, "letter"), ("DE", None, "a4"), ("BR", None, "a4"), ("TZ", None, "a4"),
    (None, None, "a4"), ("US", "a4", "a4"), ("DE", "letter", "letter"),
])
def test_the_paper_follows_the_issuer_s_country_unless_overridden(country, override, expected):
    assert page_size_for(country, override) == expected


def test_a_simple_invoice_renders_well_under_a_second(tmp_path):
    """About 0.3 to 0.5 s on a 2-core machine; the bound only catches a layout that went pathological."""
    import time

    doc = busy_document(6)
    render_pdf(doc, tmp_path / "warm.pdf")
    start = time.perf_counter()
    for i in range(3):
        render_pdf(doc, tmp_path / f"{i}.pdf")
    assert (time.perf_counter() - start) / 3 < 1.5
