"""The document lifecycle through the CLI: amend (reissue, next-invoice), void, history, on both databases."""
import csv
from decimal import Decimal as D

import pytest
import yaml
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import ledger
from helpers import billing_in, small_focus_rows, two_month_world, write_focus_csv


@pytest.fixture()
def world(tmp_path, ledger_url):
    return two_month_world(tmp_path, ledger_url)


def billing(world, *args) -> int:
    return billing_in(world, *args)


def run(world, month, issue_date):
    return billing(world, "run", "--month", month, "--workers", "1", "--issue-date", issue_date, "--actor", "ci")


def restate_alpha_compute(world, cost="150.00"):
    rows = small_focus_rows()
    rows[0][9] = cost            # the cloud restated alpha's compute on the shared cluster (was 100.0000000001)
    write_focus_csv(world["tmp"] / "focus" / "2022-01.csv", rows)


def documents(world, month) -> list[dict]:
    with open(world["out"] / month / "invoices.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def pdf_text(world, month, number) -> str:
    return " ".join(p.extract_text() for p in PdfReader(world["out"] / month / "invoices" / f"{number}.pdf").pages)


def numbers(world) -> list[str]:
    engine = ledger.open_ledger(world["ledger"])
    with Session(engine) as s:
        found = sorted(n for n in s.scalars(select(ledger.InvoiceRow.number)) if n)
    engine.dispose()
    return found


def test_amend_reissues_a_credit_note_and_a_new_invoice_and_a_rerun_changes_nothing(world, capsys):
    assert run(world, "2022-01", "2022-02-10") == 0
    restate_alpha_compute(world)
    assert run(world, "2022-01", "2022-02-10") == 1
    assert "billing amend --month 2022-01" in capsys.readouterr().err
    assert billing(world, "amend", "--month", "2022-01", "--reason", "AWS restated January compute",
                   "--issue-date", "2022-03-01", "--workers", "1", "--actor", "finance") == 0
    out = capsys.readouterr().out
    assert "2022-01: amended (reissue): 2 new document(s)" in out
    assert "new: TST-CN-2022-0001 credit note community alpha -2022.60 USD (corrects TST-2022-0001)" in out
    assert "new: TST-2022-0003 invoice community alpha 2072.60 USD (corrects TST-2022-0001)" in out

    rows = {r["invoice_number"]: r for r in documents(world, "2022-01")}
    assert rows["TST-2022-0001"]["status"] == "credited"
    assert rows["TST-CN-2022-0001"]["document_type"] == "credit_note"
    assert rows["TST-CN-2022-0001"]["corrects"] == "TST-2022-0001" and rows["TST-CN-2022-0001"]["total"] == "-2022.60"
    assert rows["TST-2022-0003"]["corrects"] == "TST-2022-0001" and rows["TST-2022-0003"]["total"] == "2072.60"
    assert rows["TST-2022-0003"]["issue_date"] == "2022-03-01" and rows["TST-2022-0003"]["status"] == "finalized"
    # the grant's invoice and beta's statement did not change: untouched
    assert rows["TST-2022-0002"]["status"] == "finalized" and rows["TST-ST-2022-0001"]["status"] == "finalized"
    assert "2,022.60" in pdf_text(world, "2022-01", "TST-CN-2022-0001")
    assert "2,072.60" in pdf_text(world, "2022-01", "TST-2022-0003")
    assert numbers(world) == ["TST-2022-0001", "TST-2022-0002", "TST-2022-0003", "TST-CN-2022-0001",
                              "TST-ST-2022-0001"]

    # The month now says what the data says: a rerun and a second amend create nothing.
    assert run(world, "2022-01", "2022-03-01") == 0
    assert billing(world, "amend", "--month", "2022-01", "--reason", "again", "--workers", "1") == 0
    assert "nothing to amend" in capsys.readouterr().out
    assert numbers(world) == ["TST-2022-0001", "TST-2022-0002", "TST-2022-0003", "TST-CN-2022-0001",
                              "TST-ST-2022-0001"]

    assert billing(world, "history", "TST-2022-0001") == 0
    history = capsys.readouterr().out
    assert "status credited" in history
    assert "finalized by ci" in history
    assert "credited  by finance: AWS restated January compute (credit_note TST-CN-2022-0001)" in history
    assert "replaced  by finance: AWS restated January compute (by TST-2022-0003)" in history


def test_amend_next_invoice_carries_the_difference_to_the_next_invoice(world, capsys):
    assert run(world, "2022-01", "2022-02-10") == 0
    restate_alpha_compute(world)
    assert billing(world, "amend", "--month", "2022-01", "--reason", "late AWS restatement", "--policy",
                   "next-invoice", "--workers", "1") == 0
    out = capsys.readouterr().out
    assert "carried: community alpha: 50.00 USD carried from TST-2022-0001 to the next invoice" in out
    assert numbers(world) == ["TST-2022-0001", "TST-2022-0002", "TST-ST-2022-0001"]   # nothing new issued
    assert run(world, "2022-01", "2022-02-10") == 0     # January now says what the data says

    assert run(world, "2022-02", "2022-03-10") == 0
    feb = {r["bill_to"]: r for r in documents(world, "2022-02")}
    assert D(feb["alpha"]["adjustments"]) == D("50.00")
    text = pdf_text(world, "2022-02", feb["alpha"]["invoice_number"])
    assert "Adjustment to TST-2022-0001 (January 2022)" in text
    assert run(world, "2022-02", "2022-03-10") == 0     # a rerun computes the same February invoice
    # Amending January again (the same data) creates nothing; reissuing it now would bill the difference twice.
    assert billing(world, "amend", "--month", "2022-01", "--reason", "again", "--workers", "1") == 0
    assert "nothing to amend" in capsys.readouterr().out


def test_a_party_that_disappears_gets_a_credit_note_and_one_that_appears_a_new_invoice(world, capsys):
    assert run(world, "2022-01", "2022-02-10") == 0
    data = yaml.safe_load(world["org"].read_text())
    data["communities"][0]["active_from"] = "2022-02"   # alpha was not a customer in January after all
    data["clusters"][1]["community"] = "beta"
    data["hubs"][2]["community"] = "beta"
    world["org"].write_text(yaml.safe_dump(data, sort_keys=False))
    assert billing(world, "amend", "--month", "2022-01", "--reason", "alpha signed in February",
                   "--workers", "1", "--issue-date", "2022-03-01") == 0
    rows = {r["invoice_number"]: r for r in documents(world, "2022-01")}
    assert rows["TST-2022-0001"]["status"] == "credited"
    assert rows["TST-CN-2022-0001"]["corrects"] == "TST-2022-0001"
    assert not any(r["bill_to"] == "alpha" and r["status"] == "finalized" and r["document_type"] != "credit_note"
                   for r in rows.values())


def test_void_cancels_an_invoice_by_a_full_credit_note(world, capsys):
    assert run(world, "2022-01", "2022-02-10") == 0
    assert billing(world, "void", "TST-2022-0001", "--reason", "sent to the wrong customer", "--workers", "1",
                   "--issue-date", "2022-02-20") == 0
    assert "TST-2022-0001: voided by credit note TST-CN-2022-0001 (-2022.60 USD)" in capsys.readouterr().out
    rows = {r["invoice_number"]: r for r in documents(world, "2022-01")}
    assert rows["TST-2022-0001"]["status"] == "voided" and rows["TST-CN-2022-0001"]["total"] == "-2022.60"
    assert (world["out"] / "2022-01" / "invoices" / "TST-CN-2022-0001.pdf").exists()
    # voided stays voided: a rerun does not bill alpha again, nor take a number
    assert run(world, "2022-01", "2022-02-20") == 0
    assert numbers(world) == ["TST-2022-0001", "TST-2022-0002", "TST-CN-2022-0001", "TST-ST-2022-0001"]
    # a voided invoice, a credit note and an unknown number cannot be voided
    assert billing(world, "void", "TST-2022-0001", "--reason", "x") == 2
    assert billing(world, "void", "TST-CN-2022-0001", "--reason", "x") == 2
    assert billing(world, "void", "TST-2099-0001", "--reason", "x") == 2
    assert "no such document" in capsys.readouterr().err


def test_a_failing_render_during_amend_takes_no_number(world, monkeypatch, capsys):
    import invoices.render as render

    assert run(world, "2022-01", "2022-02-10") == 0
    restate_alpha_compute(world)

    def broken(doc, path, locale="en_US"):
        raise render.RenderError("disk full")

    monkeypatch.setattr(render, "render_pdf", broken)
    assert billing(world, "amend", "--month", "2022-01", "--reason", "x", "--workers", "1") == 1
    assert "no number was taken" in capsys.readouterr().err
    assert numbers(world) == ["TST-2022-0001", "TST-2022-0002", "TST-ST-2022-0001"]
    assert {r["status"] for r in documents(world, "2022-01")} == {"finalized"}


def test_numbers_follow_time(world, capsys):
    assert run(world, "2022-02", "2022-03-10") == 0
    assert run(world, "2022-01", "2022-02-10") == 2
    assert "issue date 2022-02-10 is before 2022-03-10" in capsys.readouterr().err
    assert run(world, "2022-01", "2022-01-20") == 2
    assert "before 2022-01 ends" in capsys.readouterr().err


def test_the_revenue_report_counts_corrections_in_the_month_they_were_issued(world, capsys):
    assert run(world, "2022-01", "2022-02-10") == 0
    restate_alpha_compute(world)
    assert billing(world, "amend", "--month", "2022-01", "--reason", "restated", "--issue-date", "2022-03-01",
                   "--workers", "1") == 0
    assert billing(world, "report") == 0
    with open(world["out"] / "revenue.csv", newline="") as fh:
        issued = {(r["month"], r["community"]): r for r in csv.DictReader(fh)}
    assert issued[("2022-02", "alpha")]["non_grant"] == "2022.60"
    assert issued[("2022-03", "alpha")]["non_grant"] == "50.00"      # -2022.60 + 2072.60, issued in March
    with open(world["out"] / "revenue-by-service-month.csv", newline="") as fh:
        service = {(r["month"], r["community"]): r for r in csv.DictReader(fh)}
    assert service[("2022-01", "alpha")]["non_grant"] == "2072.60"
    assert service[("2022-01", "alpha")]["cloud_passthrough"] == "572.60"
