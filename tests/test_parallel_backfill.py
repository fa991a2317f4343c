"""Compute in parallel, finalize in order: a backfill on a local Dask cluster of two workers gives the same
ledger, numbers and PDFs as a sequential one."""
import hashlib

import pytest
import yaml

from billing import ledger
from billing.cli import main
from helpers import small_focus_rows, small_org_data, write_focus_csv

pytestmark = pytest.mark.e2e
MONTHS = ("2022-01", "2022-02", "2022-03")


def make_org(folder):
    rows = small_focus_rows()
    for i, month in enumerate(MONTHS):
        month_rows = [r[:3] + [f"{month}-01T00:00:00Z"] * 2 + r[5:] for r in rows[:-1]]
        month_rows[0][9] = f"{100 + 11 * i}.25"          # each month a little different
        write_focus_csv(folder / "focus" / f"{month}.csv", month_rows)
    path = folder / "org.yaml"
    path.write_text(yaml.safe_dump(small_org_data(), sort_keys=False))
    return path


def snapshot(out):
    engine = ledger.open_ledger(f"sqlite:///{out / 'ledger.db'}")
    docs = [(d.month, d.number, d.document_type, d.party_id, d.total, d.issue_date)
            for m in MONTHS for d in ledger.month_invoices(engine, m)]
    engine.dispose()
    pdfs = {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.glob("*/invoices/*.pdf"))}
    csvs = {str(p.relative_to(out)): p.read_text() for p in sorted(out.glob("*/*.csv"))}
    return docs, pdfs, csvs


def test_a_parallel_backfill_gives_what_a_sequential_one_gives(prefect_harness, tmp_path):
    org = make_org(tmp_path)
    common = ["--org", str(org), "--from", MONTHS[0], "--to", MONTHS[-1], "--issue-date", "closing-day",
              "--actor", "ci", "--no-notify"]
    assert main(["backfill", "--out", str(tmp_path / "sequential"), "--workers", "1", *common]) == 0
    assert main(["backfill", "--out", str(tmp_path / "parallel"), "--parallel", "2", *common]) == 0
    sequential, parallel = snapshot(tmp_path / "sequential"), snapshot(tmp_path / "parallel")
    assert [d[1] for d in sequential[0]] == ["TST-2022-0001", "TST-ST-2022-0001", "TST-2022-0002",
                                             "TST-2022-0003", "TST-ST-2022-0002", "TST-2022-0004",
                                             "TST-2022-0005", "TST-ST-2022-0003", "TST-2022-0006"]
    assert parallel == sequential
    # a rerun in parallel changes nothing
    assert main(["backfill", "--out", str(tmp_path / "parallel"), "--parallel", "2", *common]) == 0
    assert snapshot(tmp_path / "parallel") == sequential
