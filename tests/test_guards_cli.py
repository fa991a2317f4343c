"""Nothing wrong can be finalized: `billing run` refuses bad input with exit 2 and writes nothing."""
import sqlite3

import pytest
import yaml

from billing.cli import main
from billing.ledger import LEDGER_ENV
from helpers import focus_row, small_focus_rows, small_org_data, write_focus_csv


@pytest.fixture(autouse=True)
def _ledger_in_out(monkeypatch):
    monkeypatch.delenv(LEDGER_ENV, raising=False)


def setup(tmp_path, rows, shared_cluster=None):
    """An org file over one month of FOCUS rows; shared_cluster: fields to change on the shared cluster."""
    write_focus_csv(tmp_path / "focus" / "2022-01.csv", rows)
    data = small_org_data()
    data["clusters"][0].update(shared_cluster or {})
    path = tmp_path / "org.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run(org_path):
    return main(["run", "--org", str(org_path), "--month", "2022-01", "--out", str(org_path.parent / "out"),
                 "--workers", "1"])


def assert_nothing_written(out):
    """No file under out/, except perhaps an empty ledger database (and its lock file): not one invoice."""
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) if out.exists() else []
    assert files in ([], ["ledger.db"], [".ledger.db.lock", "ledger.db"]), files
    if files:
        with sqlite3.connect(out / "ledger.db") as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            assert "invoices" not in tables or db.execute("SELECT count(*) FROM invoices").fetchone() == (0,)


def test_a_currency_that_is_not_iso_4217_is_refused(tmp_path, capsys):
    rows = small_focus_rows()
    rows[4][11] = "XYZ"
    org_path = setup(tmp_path, rows)
    assert run(org_path) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {tmp_path / 'focus' / '2022-01.csv'}: field BillingCurrency: 'XYZ' is not an ISO 4217 "
                   "currency code such as USD, EUR or JPY\n")
    assert_nothing_written(tmp_path / "out")


def owner_rows():
    rows = [focus_row("111100000000", "1000.00", tags={"Owner": "alpha", "team": "x"}),
            focus_row("111100000000", "234.56", tags={"Owner": "beta"})]
    return rows + [r for r in small_focus_rows() if r[2] == "222200000000"]


HUB_TAG_MESSAGE = (
    "cluster 'shared' has 1,234.56 USD of cost in 2022-01 (FOCUS files 'focus/*.csv') but none of its rows carries "
    "its hub tag 'owner'; tag keys found on its rows: 'Owner' (differs only in case), 'team'; fix hub_tag, or set "
    "untagged_ok: true on the cluster if its cost really carries no hub tag")


def test_a_cluster_whose_hub_tag_no_row_carries_is_refused(tmp_path, capsys):
    org_path = setup(tmp_path, owner_rows(), {"hub_tag": "owner"})
    assert run(org_path) == 2
    assert capsys.readouterr().err == f"error: {HUB_TAG_MESSAGE}\n"
    assert_nothing_written(tmp_path / "out")


def test_sources_check_says_the_same(tmp_path, capsys):
    org_path = setup(tmp_path, owner_rows(), {"hub_tag": "owner"})
    assert main(["sources", "check", "--org", str(org_path), "--month", "2022-01", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL shared                       focus                  {HUB_TAG_MESSAGE}\n" in out
    assert "ok   alpha-dedicated" in out and "1 of 2 source(s) can read 2022-01" in out


def test_untagged_ok_lets_the_cost_be_split_as_overhead(tmp_path, capsys):
    org_path = setup(tmp_path, owner_rows(), {"hub_tag": "owner", "untagged_ok": True})
    assert main(["sources", "check", "--org", str(org_path), "--month", "2022-01", "--out", str(tmp_path)]) == 0
    assert "2 row(s) for 2022-01, 1,234.56 USD; 0 tagged with owner" in capsys.readouterr().out
    assert run(org_path) == 0
    attribution = (tmp_path / "out" / "2022-01" / "attribution.csv").read_text()
    assert "split evenly: 50.00% of shared overhead" in attribution


def test_a_draft_of_a_month_whose_hub_tag_no_row_carries_is_shown_with_the_warning(tmp_path, capsys):
    rows = small_focus_rows()
    org_path = setup(tmp_path, rows)
    data = yaml.safe_load(org_path.read_text())
    data["clusters"][0]["hub_tag"] = "owner"
    org_path.write_text(yaml.safe_dump(data))
    assert main(["run", "--org", str(org_path), "--month", "2022-01", "--out", str(tmp_path / "out"),
                 "--workers", "1", "--draft"]) == 0
    out = capsys.readouterr().out
    assert "none of its rows carries its hub tag 'owner'" in out and "this draft splits that cost" in out
    assert main(["run", "--org", str(org_path), "--month", "2022-01", "--out", str(tmp_path / "out"),
                 "--workers", "1"]) == 2
