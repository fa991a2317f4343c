"""The `billing` command on a small inline organization: outputs, reruns, drafts, changes, exit codes."""
import csv
import subprocess
import sys
from decimal import Decimal as D
from pathlib import Path

import pytest
import yaml

from billing.cli import main
from helpers import small_focus_rows, small_org_data, write_focus_csv


@pytest.fixture()
def org_path(tmp_path) -> Path:
    write_focus_csv(tmp_path / "focus" / "2022-01.csv", small_focus_rows())
    path = tmp_path / "org.yaml"
    path.write_text(yaml.safe_dump(small_org_data(), sort_keys=False))
    return path


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def run(org_path, *args):
    return main(["run", "--org", str(org_path), "--out", str(org_path.parent / "out"), "--workers", "1",
                 "--issue-date", "closing-day", *args])


def test_run_writes_all_outputs_and_rerun_is_a_no_op(org_path, capsys):
    out = org_path.parent / "out"
    assert run(org_path, "--month", "2022-01") == 0
    invoices = read_csv(out / "2022-01" / "invoices.csv")
    assert [r["invoice_number"] for r in invoices] == ["TST-2022-0001", "TST-ST-2022-0001", "TST-2022-0002"]
    assert [r["document_type"] for r in invoices] == ["invoice", "statement", "invoice"]
    assert [r["total"] for r in invoices] == ["2022.60", "0.00", "1555.25"]
    for r in invoices:
        assert (out / r["pdf"]).exists()
    recon = read_csv(out / "2022-01" / "reconciliation.csv")
    assert recon == [{"provider": "aws", "billing_account": "999900000000", "currency": "USD",
                      "input_total": "582.1800000001", "attributed": "577.8500000001", "unattributed": "4.33",
                      "difference": "0.00"}]
    attribution = read_csv(out / "2022-01" / "attribution.csv")
    assert sum(D(r["cost"]) for r in attribution) == D("582.1800000001")
    pdf_bytes = {p.name: p.read_bytes() for p in (out / "2022-01" / "invoices").glob("*.pdf")}
    assert run(org_path, "--month", "2022-01") == 0
    assert "0 new, 3 unchanged" in capsys.readouterr().out
    assert read_csv(out / "2022-01" / "invoices.csv") == invoices
    assert {p.name: p.read_bytes() for p in (out / "2022-01" / "invoices").glob("*.pdf")} == pdf_bytes


def test_draft_takes_no_number_then_final_run_does(org_path):
    out = org_path.parent / "out"
    assert run(org_path, "--month", "2022-01", "--draft") == 0
    drafts = read_csv(out / "2022-01" / "invoices.csv")
    assert {r["invoice_number"] for r in drafts} == {""} and {r["status"] for r in drafts} == {"draft"}
    assert sorted(p.name for p in (out / "2022-01" / "invoices").glob("*.pdf"))[0].startswith("DRAFT-")
    assert run(org_path, "--month", "2022-01") == 0
    assert sorted(p.name for p in (out / "2022-01" / "invoices").glob("*.pdf")) == [
        "TST-2022-0001.pdf", "TST-2022-0002.pdf", "TST-ST-2022-0001.pdf"]


def test_changed_data_after_finalization_exits_one_and_touches_nothing(org_path, capsys):
    out = org_path.parent / "out"
    assert run(org_path, "--month", "2022-01") == 0
    before = (out / "2022-01" / "invoices.csv").read_bytes()
    rows = small_focus_rows()
    rows[0][9] = "150.00"   # the cloud restated alpha's compute
    write_focus_csv(org_path.parent / "focus" / "2022-01.csv", rows)
    assert run(org_path, "--month", "2022-01") == 1
    err = capsys.readouterr().err
    assert "community alpha: invoice TST-2022-0001 total 2022.60 USD, recomputed 2072.60 (difference +50.00)" in err
    assert (out / "2022-01" / "invoices.csv").read_bytes() == before


def test_bad_input_exits_two_with_one_clear_message(org_path):
    rows = small_focus_rows()
    rows[1][9] = "=HYPERLINK(\"x\")"
    write_focus_csv(org_path.parent / "focus" / "2022-01.csv", rows)
    proc = subprocess.run([sys.executable, "-m", "billing.cli", "run", "--org", str(org_path), "--month", "2022-01",
                           "--out", str(org_path.parent / "out")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "2022-01.csv: field BilledCost: '=HYPERLINK(\"x\")' is not a decimal number" in proc.stderr
    assert not (org_path.parent / "out" / "2022-01").exists()  # nothing half-written
    assert main(["run", "--org", str(org_path), "--month", "2022-13"]) == 2


def test_report_sums_the_ledger(org_path):
    out = org_path.parent / "out"
    assert run(org_path, "--month", "2022-01") == 0
    assert main(["report", "--org", str(org_path), "--out", str(out)]) == 0
    rows = read_csv(out / "revenue.csv")
    by = {r["community"]: r for r in rows}
    assert by["alpha"]["non_grant"] == "2022.60" and by["alpha"]["grant_funded"] == "0.00"
    assert by["beta"]["grant_funded"] == "1555.25" and by["beta"]["subsidies"] == "-1555.25"
    assert by["beta"]["total"] == "1555.25" and by["beta"]["non_grant"] == "0.00"
    assert (out / "revenue.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_spreadsheet_formulas_are_neutralized(tmp_path):
    from billing.outputs import safe_cell, write_csv

    assert safe_cell("=1+1") == "'=1+1" and safe_cell("@x") == "'@x" and safe_cell("-cmd") == "'-cmd"
    assert safe_cell(D("-1.50")) == D("-1.50")
    write_csv(tmp_path / "x.csv", ["a", "b"], [["+SUM(A1)", D("-2.5")]])
    assert (tmp_path / "x.csv").read_text() == "a,b\n'+SUM(A1),-2.50\n"


def test_sources_check_says_which_source_works_and_why_not(org_path, capsys):
    assert main(["sources", "check", "--org", str(org_path), "--month", "2022-01", "--out", str(org_path.parent)]) == 0
    out = capsys.readouterr().out
    assert "ok   shared" in out and "4 row(s) for 2022-01" in out
    data = yaml.safe_load(org_path.read_text())
    data["clusters"][1]["source"]["path"] = "nowhere/*.csv"
    data["clusters"][0]["sub_accounts"] = ["555500000000"]
    org_path.write_text(yaml.safe_dump(data))
    assert main(["sources", "check", "--org", str(org_path), "--month", "2022-01", "--out", str(org_path.parent)]) == 1
    out = capsys.readouterr().out
    assert "FAIL shared" in out and "no 2022-01 row for sub-account(s) 555500000000" in out
    assert "FAIL alpha-dedicated" in out and "no file matches 'nowhere/*.csv'" in out


def test_every_invoice_traces_to_its_input_files(org_path):
    from billing import ledger
    from billing.sources.base import file_sha256

    out = org_path.parent / "out"
    assert run(org_path, "--month", "2022-01") == 0
    engine = ledger.open_ledger(f"sqlite:///{out / 'ledger.db'}")
    invoice = ledger.month_invoices(engine, "2022-01")[0]
    manifest = ledger.input_manifest(engine, invoice.data_fingerprint)
    engine.dispose()
    assert len(manifest) == 1 and manifest[0]["clusters"] == ["shared", "alpha-dedicated"]
    assert manifest[0]["paths"] == [str(org_path.parent / "focus" / "2022-01.csv")]
    assert manifest[0]["rows"] == 9
    import hashlib
    expected = hashlib.sha256(b"2022-01.csv" + file_sha256(manifest[0]["paths"][0]).encode()).hexdigest()
    assert manifest[0]["fingerprint"] == expected


def test_a_failing_source_leaves_the_month_unfinalized_and_the_backfill_goes_on(org_path, monkeypatch, capsys):
    from billing.errors import SourceError
    from billing.months import Month
    from billing.sources.focus import FocusFiles

    rows = small_focus_rows()
    write_focus_csv(org_path.parent / "focus" / "2022-02.csv", [r[:3] + ["2022-02-01T00:00:00Z"] + r[4:] for r in rows])
    real_fetch = FocusFiles.fetch

    def flaky(self, month, refresh=False):
        if month == Month(2022, 1):
            raise SourceError(f"cluster {self.cluster.id!r}", "503 Service Unavailable (gave up after 5 attempts)",
                              transient=True)
        return real_fetch(self, month, refresh=refresh)

    monkeypatch.setattr(FocusFiles, "fetch", flaky)
    out = org_path.parent / "out"
    code = main(["backfill", "--org", str(org_path), "--out", str(out), "--from", "2022-01", "--to", "2022-02",
                 "--issue-date", "closing-day",
                 "--workers", "1"])
    assert code == 1
    err = capsys.readouterr().err
    assert "2022-01 is incomplete: cluster 'shared': 503 Service Unavailable" in err
    assert "No invoice was finalized from partial data" in err
    assert not (out / "2022-01").exists() and (out / "2022-02" / "invoices.csv").exists()


def test_a_month_not_yet_closed_gives_drafts_and_says_when_it_closes(org_path, capsys):
    """A month is finalized only close_after_days (default 5) after it ends; before that, drafts."""
    import datetime as dt

    from billing.config import load_organization
    from billing.months import Month
    from billing.pipeline import RunOptions, run_month

    org = load_organization(org_path)
    out = org_path.parent / "out"
    result = run_month(org, Month(2022, 1), RunOptions(out_dir=out, workers=1, today=dt.date(2022, 2, 3)))
    assert result.draft and {i.status for i in result.invoices} == {"draft"}
    assert "2022-01 closes on 2022-02-06 (5 days after it ends" in result.warnings[0]
    assert sorted(p.name for p in (out / "2022-01" / "invoices").glob("*.pdf"))[0].startswith("DRAFT-")
    result = run_month(org, Month(2022, 1), RunOptions(out_dir=out, workers=1, today=dt.date(2022, 2, 6)))
    assert not result.draft and {i.status for i in result.invoices} == {"finalized"}
    assert {i.issue_date for i in result.invoices} == {dt.date(2022, 2, 6)}
    assert not list((out / "2022-01" / "invoices").glob("DRAFT-*.pdf"))


def test_a_month_still_running_is_only_previewed(org_path, capsys):
    import datetime as dt

    today = dt.date.today()
    month = f"{today.year:04d}-{today.month:02d}"
    write_focus_csv(org_path.parent / "focus" / f"{month}.csv",
                    [r[:3] + [f"{month}-01T00:00:00Z"] * 2 + r[5:] for r in small_focus_rows()])
    assert run(org_path, "--month", month) == 0
    assert f"{month} closes on" in capsys.readouterr().out
    assert all(p.name.startswith("DRAFT-") for p in (org_path.parent / "out" / month / "invoices").glob("*.pdf"))
