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


def setup(tmp_path, rows, **cluster_changes):
    """An org file over one month of FOCUS rows; cluster_changes: {cluster index: {field: value}}."""
    write_focus_csv(tmp_path / "focus" / "2022-01.csv", rows)
    data = small_org_data()
    for index, fields in cluster_changes.items():
        data["clusters"][index].update(fields)
    path = tmp_path / "org.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run(org_path):
    return main(["run", "--org", str(org_path), "--month", "2022-01", "--out", str(org_path.parent / "out"),
                 "--workers", "1"])


def assert_nothing_written(out):
    """No file under out/, except perhaps an empty ledger database: not one invoice."""
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) if out.exists() else []
    assert files in ([], ["ledger.db"]), files
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
