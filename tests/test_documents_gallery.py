"""One of each billing document, rendered and read back as an accounts-payable clerk would read it.

The documents come from `document_samples.gallery` (priced by the real
models, built by the ledger's `build_invoices`). Each is rendered to PDF and
its text checked for the facts a reader needs. To look at them, write PNGs:

    BILLING_GALLERY=out/gallery .venv/bin/python -m pytest tests/test_documents_gallery.py

(needs `pdftoppm` from poppler-utils); one `<name>-<page>.png` per page.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pypdf import PdfReader

from billing.documents import document_for
from document_samples import gallery
from invoices.render import render_many

GALLERY_ENV = "BILLING_GALLERY"
PAYMENT_WORDS = ("Payment instructions", "PAYMENT INSTRUCTIONS", "Please quote", "routing 000000000", "Due date")


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, list[str]]:
    folder = tmp_path_factory.mktemp("gallery")
    documents = gallery(folder)
    render_many([(document_for(inv), folder / f"{name}.pdf") for name, inv in documents.items()])
    if os.environ.get(GALLERY_ENV):
        _write_pngs(folder, Path(os.environ[GALLERY_ENV]), documents)
    return {name: [p.extract_text() for p in PdfReader(folder / f"{name}.pdf").pages] for name in documents}


def _write_pngs(folder: Path, out: Path, documents) -> None:
    if not shutil.which("pdftoppm"):
        pytest.fail(f"{GALLERY_ENV} is set but pdftoppm (poppler-utils) is not installed")
    out.mkdir(parents=True, exist_ok=True)
    for name in documents:
        shutil.copy(folder / f"{name}.pdf", out / f"{name}.pdf")
        subprocess.run(["pdftoppm", "-png", "-r", "80", str(folder / f"{name}.pdf"), str(out / name)], check=True)


def text_of(pages, name) -> str:
    return " ".join(" ".join(pages[name]).split())      # one line: phrases wrap anywhere


def test_every_document_is_one_page(pages):
    assert {name: len(p) for name, p in pages.items() if len(p) != 1} == {}


def test_community_invoice_says_what_the_funder_covers_and_on_which_invoice(pages):
    text = text_of(pages, "community-invoice-part-funded")
    assert "INVOICE" in text and "OHC-2022-0102" in text
    assert ("Global Communities Grant pays $928.97 of these charges (grant CZI EOSS-5-2022-GC-0417, "
            "its invoice OHC-2022-0104)") in text
    assert "Total amount due (USD) $928.97" in text and "Due July 1, 2022" in text
    assert "50%" in text and "50 %" not in text
    assert "Please quote invoice number OHC-2022-0102" in text


def test_fully_funded_month_is_a_statement_with_nothing_due(pages):
    text = text_of(pages, "community-statement-fully-funded")
    assert "STATEMENT" in text and "OHC-ST-2022-0007" in text and "INVOICE" not in text
    assert ("Your charges for May 2022 are paid by Global Communities Grant under grant CZI EOSS-5-2022-GC-0417, "
            "invoice OHC-2022-0104.") in text
    assert "Nothing is due" in text and "not a request for payment" in text
    assert "$1,000.00" in text and "-$1,401.69" in text and "Total (USD) $0.00" in text      # the lines are shown
    for word in PAYMENT_WORDS:
        assert word not in text, word
    assert not re.search(r"\bDue\b", text)                  # no "Due <date>" anywhere
    assert "RUC 20512345678" in text                        # the customer's tax id


def test_funder_invoice_shows_the_grant_each_community_its_document_and_the_split(pages):
    text = text_of(pages, "funder-invoice")
    assert "Grant CZI EOSS-5-2022-GC-0417" in text and "GC-PO-2022-118" in text
    assert "Global Communities Foundation" in text           # the legal name billed
    for community, document, fees, cloud, amount in [
        ("Kilimanjaro Institute for Data Science", "Community invoice OHC-2022-0102", "$750.00", "$178.97",
         "$928.97"),
        ("Universidad Andina de Datos", "Community statement OHC-ST-2022-0007", "$1,000.00", "$401.69",
         "$1,401.69"),
        ("Volta Basin University", "Community invoice OHC-2022-0103", "$1,000.00", "$0.00", "$1,000.00"),
    ]:
        row = re.search(re.escape(community) + r".*?" + re.escape(document), text)
        assert row, community
        assert f"{fees} {cloud} {amount}" in text, community
    assert "of which service fees $2,750.00" in text and "of which cloud costs $580.66" in text
    assert "Total amount due (USD) $3,330.66" in text
    assert "3 communities" in text


def test_university_invoice_has_its_po_reference_legal_name_and_tax_ids(pages):
    text = text_of(pages, "university-invoice-po")
    assert "PO number 4500123456" in text and "Your reference Dept. of Statistics, project 22-117" in text
    assert "Board of Regents of Lakeshore State University" in text and "for Lakeshore State University" in text
    assert "Tax ID: EIN 41-6007162" in text
    assert "your PO number 4500123456" in text
    assert ("Invoiced by Commons Fiscal Sponsorship, Inc., fiscal sponsor of Open Hubs Collaborative" in text)
    assert "Tax ID: EIN 12-3456789" in text                   # the seller's: the fiscal sponsor's


def test_credit_note_cancels_the_original_and_asks_for_nothing(pages):
    text = text_of(pages, "credit-note")
    assert "CREDIT NOTE" in text and "OHC-CN-2022-0003" in text
    assert "Credit note for invoice OHC-2022-0101 of June 1, 2022 ($3,911.45)." in text
    assert "Reason: The dedicated-cluster uplift was charged" in text
    assert "Total credited (USD) -$3,911.45" in text
    assert "This credit note cancels invoice OHC-2022-0101 in full" in text
    assert "Nothing is to be paid on this credit note" in text
    for word in PAYMENT_WORDS:
        assert word not in text, word
    assert "Credit note OHC-CN-2022-0003 Page 1 of 1" in text   # footer


def test_replacement_invoice_says_what_it_replaces_and_why(pages):
    text = text_of(pages, "replacement-invoice")
    assert "OHC-2022-0131" in text and "Replaces invoice OHC-2022-0101" in text
    assert ("Replaces invoice OHC-2022-0101 of June 1, 2022 ($3,911.45), credited by credit note "
            "OHC-CN-2022-0003.") in text
    assert "Reason: Service fee corrected from $1,000.00 to $900.00 (agreed discount)." in text
    assert "Total amount due (USD) $3,761.45" in text


def test_prior_period_adjustments_name_the_invoice_and_month_they_correct(pages):
    text = text_of(pages, "invoice-with-adjustments")
    assert "Prior-period adjustments" in text
    assert text.count("Corrects invoice OHC-2022-0101 for May 2022") == 2
    assert "$84.12" in text and "-$12.40" in text and "Prior-period adjustments subtotal $71.72" in text
    assert "Service period June 2022" in text


def test_every_amount_is_printed_with_its_currency(pages):
    for name, doc_pages in pages.items():
        text = text_of(pages, name)
        bare = re.findall(r"(?<![$\d,.])-?\d{1,3}(?:,\d{3})*\.\d{2}\b(?!%)", text)
        assert bare == [], (name, bare)
