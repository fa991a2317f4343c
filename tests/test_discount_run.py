"""A discount through the whole run: invoice lines, PDF, invoices.csv and the revenue report."""
import csv
import subprocess
import sys

import yaml
from pypdf import PdfReader

from billing.cli import main
from helpers import small_focus_rows, small_org_data, write_focus_csv


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_discounts_are_adjustments_on_the_invoice_and_in_the_reports(tmp_path):
    write_focus_csv(tmp_path / "focus" / "2022-01.csv", small_focus_rows())
    data = small_org_data()
    # alpha: fees 1000 + 500 uplift, cloud 522.60 (see test_cli_run) -> 2022.60 before discounts
    data["pricing_plans"][0]["charges"] += [{"model": "discount", "percent": "10", "applies_to": "fees"},
                                            {"model": "discount", "amount": "100.00",
                                             "description": "Goodwill credit of {discount}"}]
    org = tmp_path / "org.yaml"
    org.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "out"
    assert main(["run", "--org", str(org), "--out", str(out), "--workers", "1", "--month", "2022-01"]) == 0

    alpha = read_csv(out / "2022-01" / "invoices.csv")[0]
    assert (alpha["bill_to"], alpha["fees"], alpha["adjustments"], alpha["total"]) == (
        "alpha", "1500.00", "-250.00", "1772.60")
    text = " ".join(page.extract_text() for page in PdfReader(out / alpha["pdf"]).pages)
    assert "Adjustments" in text and "Discount: 10% off service fees of $1,500.00" in " ".join(text.split())
    assert "Goodwill credit of $100.00" in text and "1,772.60" in text

    assert main(["report", "--org", str(org), "--out", str(out)]) == 0
    revenue = {r["community"]: r for r in read_csv(out / "revenue.csv")}
    assert (revenue["alpha"]["adjustments"], revenue["alpha"]["non_grant"]) == ("-250.00", "1772.60")


def test_a_negative_fee_is_refused_by_validate_with_exit_code_two(tmp_path):
    data = small_org_data()
    data["pricing_plans"][0]["charges"][0]["fees"]["education"] = "-100.00"
    path = tmp_path / "org.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = subprocess.run([sys.executable, "-m", "billing.cli", "validate", "--org", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert ("pricing_plans[0] (alpha-2022).charges[0] (tier_fee).fees.education: must be an amount from 0 to "
            "1,000,000,000,000; a credit or discount is its own model (`discount`), not a negative amount "
            "(got '-100.00')") in proc.stderr
