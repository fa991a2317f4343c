"""End to end: a cloud restates a finalized sample month; amend it with each policy through the real flows.

Copies the bundled sample, finalizes June 2022 twice (two ledgers), changes
one cost in the copy's AWS June file, then corrects one ledger by credit
notes and replacement invoices (the Prefect amend flow) and the other by
prior-period adjustments on July's invoices (the CLI). Checks every PDF's
text against the ledger, that both number series are gapless, and the
revenue report.
"""
import csv
import gzip
import io
import json
import re
import shutil
from collections import defaultdict
from decimal import Decimal as D

import pytest
from babel.numbers import format_currency
from pypdf import PdfReader

from billing import ledger
from billing.cli import main
from billing.config import default_organization_path

pytestmark = pytest.mark.e2e
RESTATEMENT = D("100.00")


def restate_june(sample) -> str:
    """Add 100.00 to the first hub-tagged row of the copy's AWS June file; returns the hub."""
    path = sample / "data" / "focus" / "aws" / "2022-06.csv.gz"
    with gzip.open(path, "rt", newline="") as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    cost, tags = header.index("BilledCost"), header.index("Tags")
    for row in rows[1:]:
        hub = json.loads(row[tags] or "{}").get("2i2c:hub-name")
        if hub and not row[header.index("ChargeClass")]:
            row[cost] = str(D(row[cost]) + RESTATEMENT)
            break
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    with gzip.open(path, "wt", newline="") as fh:
        fh.write(buffer.getvalue())
    return hub


def pdf_text(path) -> str:
    return " ".join(" ".join(page.extract_text() for page in PdfReader(path).pages).split())


def check_pdfs_say_what_the_ledger_says(out, documents):
    for doc in documents:
        if not doc.number:
            continue
        text = pdf_text(out / doc.month / "invoices" / f"{doc.number}.pdf")
        assert doc.number in text
        if doc.corrects:
            assert doc.corrects in text, (doc.number, "names the document it corrects")
        amounts = [doc.total] + [l.amount for l in doc.lines]
        for amount in amounts:
            shown = format_currency(abs(amount), doc.currency, locale="en_US")
            assert shown in text, (doc.number, amount)


def check_gapless(documents):
    series = defaultdict(list)
    for doc in documents:
        if doc.number:
            prefix, _, n = doc.number.rpartition("-")
            series[prefix].append(int(n))
    for prefix, found in series.items():
        assert sorted(found) == list(range(1, len(found) + 1)), (prefix, sorted(found))
    return series


def billing(*args) -> int:
    return main(list(args))


def test_a_restated_month_is_amended_with_each_policy(prefect_harness, tmp_path, capsys):
    from flows.monthly import amend_month_flow, monthly_invoicing

    sample = tmp_path / "sample"
    shutil.copytree(default_organization_path().parent, sample)
    org_path = str(sample / "org.yaml")
    reissue_out, carry_out = tmp_path / "reissue", tmp_path / "carry"
    for out in (reissue_out, carry_out):
        monthly_invoicing("2022-06", org_path=org_path, out_dir=str(out), issue_date="2022-07-06", actor="scheduler")
    hub = restate_june(sample)

    # A rerun refuses and says how to correct.
    assert billing("run", "--org", org_path, "--out", str(reissue_out), "--month", "2022-06") == 1
    assert "billing amend --month 2022-06" in capsys.readouterr().err

    # Policy reissue, through the Prefect flow.
    result = amend_month_flow("2022-06", reason="AWS restated June", org_path=org_path, out_dir=str(reissue_out),
                              issue_date="2022-07-20", actor="finance")
    created = result.correction.created
    notes = [d for d in created if d.document_type == "credit_note"]
    replacements = [d for d in created if d.document_type != "credit_note" and d.corrects]
    assert notes and replacements
    from billing.config import load_organization

    hub_ids = {h.id for h in load_organization(org_path).hubs if h.match_value == hub}
    assert any(l.hub in hub_ids for d in replacements for l in d.lines)
    engine = ledger.open_ledger(f"sqlite:///{reissue_out / 'ledger.db'}")
    documents = ledger.month_invoices(engine, "2022-06")
    originals = {d.number: d for d in documents}
    for note in notes:
        assert note.total == -originals[note.corrects].total and originals[note.corrects].status == "credited"
    for new in replacements:   # an invoice is credited by a note; a statement (nothing was due) is just replaced
        old = originals[new.corrects]
        assert (old.status, old.document_type) in (("credited", "invoice"), ("replaced", "statement"))
    check_pdfs_say_what_the_ledger_says(reissue_out, documents)
    series = check_gapless(documents)
    assert any("-CN-" in prefix for prefix in series)
    in_force_total = sum(d.total for d in documents if d.is_in_force)
    # The month now bills the restatement exactly once, wherever it landed (the community or its funder).
    before = sum(originals[d.corrects].total for d in replacements)
    after = sum(d.total for d in replacements)
    assert after - before == RESTATEMENT
    assert amend_month_flow("2022-06", reason="again", org_path=org_path,
                            out_dir=str(reissue_out)).correction.created == []
    engine.dispose()
    assert billing("report", "--org", org_path, "--out", str(reissue_out)) == 0
    with open(reissue_out / "revenue-by-service-month.csv", newline="") as fh:
        service = [r for r in csv.DictReader(fh) if r["month"] == "2022-06"]
    assert sum(D(r["total"]) for r in service) == sum(d.total for d in documents if d.party_kind == "funder"
                                                     and d.is_in_force) + sum(
        d.total for d in documents if d.party_kind == "community" and d.is_in_force)
    with open(reissue_out / "revenue.csv", newline="") as fh:
        issued = [r for r in csv.DictReader(fh)]
    assert {r["month"] for r in issued} == {"2022-07"}   # originals and corrections were all issued in July
    assert sum(D(r["total"]) for r in issued) == in_force_total

    # Policy next-invoice, through the CLI: nothing is reissued; July's invoices carry the difference.
    assert billing("amend", "--org", org_path, "--out", str(carry_out), "--month", "2022-06", "--reason",
                   "AWS restated June", "--policy", "next-invoice") == 0
    assert "carried:" in capsys.readouterr().out
    assert billing("run", "--org", org_path, "--out", str(carry_out), "--month", "2022-07", "--issue-date",
                   "2022-08-06") == 0
    engine = ledger.open_ledger(f"sqlite:///{carry_out / 'ledger.db'}")
    june, july = ledger.month_invoices(engine, "2022-06"), ledger.month_invoices(engine, "2022-07")
    engine.dispose()
    assert all(d.status == "finalized" and d.document_type != "credit_note" for d in june)
    adjustments = [l for d in july for l in d.lines if l.kind == "adjustment"]
    assert sum(l.amount for l in adjustments) == RESTATEMENT
    assert all(re.search(r"Adjustment to OHC-(ST-)?\d{4}-\d{4} \(June 2022\)", l.description) for l in adjustments)
    check_pdfs_say_what_the_ledger_says(carry_out, july)
    check_gapless(june + july)
