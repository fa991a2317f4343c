"""One run per organization and month at a time; `billing status` says where each month stands."""
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from billing import ledger
from billing.cli import main
from helpers import small_focus_rows, small_org_data, write_focus_csv


@pytest.fixture()
def world(tmp_path, ledger_url):
    write_focus_csv(tmp_path / "focus" / "2022-01.csv", small_focus_rows())
    path = tmp_path / "org.yaml"
    path.write_text(yaml.safe_dump(small_org_data(), sort_keys=False))
    return {"org": path, "out": tmp_path / "out", "ledger": ledger_url, "tmp": tmp_path}


def billing(world, *args) -> int:
    command, *rest = args
    return main([command, "--org", str(world["org"]), "--out", str(world["out"]), "--ledger", world["ledger"], *rest])


HOLDER = textwrap.dedent("""
    import sys, time
    from billing import ledger
    engine = ledger.open_ledger(sys.argv[1])
    with ledger.month_lock(engine, "test-org", "2022-01", actor="maria"):
        print("holding", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def hold_the_month(world, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, world["ledger"], str(seconds)], stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).parent.parent)
    assert proc.stdout.readline().strip() == "holding"
    return proc


def test_a_second_run_waits_then_says_who_holds_the_month(world, capsys):
    holder = hold_the_month(world, 30)
    try:
        started = time.monotonic()
        code = billing(world, "run", "--month", "2022-01", "--workers", "1", "--lock-wait", "2",
                       "--issue-date", "2022-02-10")
        assert code == 1 and 2 <= time.monotonic() - started < 20
        err = capsys.readouterr().err
        assert "2022-01 of test-org is being invoiced by maria@" in err and "waited 2 s" in err
    finally:
        holder.kill()
        holder.wait()
    engine = ledger.open_ledger(world["ledger"])
    assert ledger.month_invoices(engine, "2022-01") == []
    engine.dispose()


def test_a_run_waits_for_the_month_and_then_runs(world):
    holder = hold_the_month(world, 3)
    try:
        assert billing(world, "run", "--month", "2022-01", "--workers", "1", "--lock-wait", "60",
                       "--issue-date", "2022-02-10") == 0
    finally:
        holder.wait()


def test_a_lock_left_by_a_dead_process_is_taken_over(world):
    holder = hold_the_month(world, 60)
    holder.kill()      # SIGKILL: no cleanup; PostgreSQL drops its advisory lock, SQLite's row says a dead pid
    holder.wait()
    assert billing(world, "run", "--month", "2022-01", "--workers", "1", "--lock-wait", "5",
                   "--issue-date", "2022-02-10") == 0


def test_status_says_where_each_month_stands(world, capsys, monkeypatch):
    from billing.errors import SourceError
    from billing.months import Month
    from billing.sources.focus import FocusFiles

    rows = small_focus_rows()
    write_focus_csv(world["tmp"] / "focus" / "2022-03.csv",
                    [r[:3] + ["2022-03-01T00:00:00Z"] * 2 + r[5:] for r in rows[:-1]])
    assert billing(world, "run", "--month", "2022-01", "--workers", "1", "--issue-date", "2022-02-10",
                   "--actor", "finance") == 0
    real_fetch = FocusFiles.fetch

    def failing(self, month, refresh=False):
        if month == Month(2022, 2):
            raise SourceError("cluster 'shared'", "503 Service Unavailable", transient=True)
        return real_fetch(self, month, refresh=refresh)

    monkeypatch.setattr(FocusFiles, "fetch", failing)
    assert billing(world, "run", "--month", "2022-02", "--workers", "1") == 1
    assert billing(world, "run", "--month", "2022-03", "--workers", "1", "--draft") == 0
    rows[0][9] = "100.0001000001"   # a restatement below a cent
    write_focus_csv(world["tmp"] / "focus" / "2022-01.csv", rows)
    assert billing(world, "run", "--month", "2022-01", "--workers", "1") == 0
    capsys.readouterr()
    assert billing(world, "status", "--to", "2022-04") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["month", "state", "documents", "totals", "unattributed", "last_run", "detail"]
    by_month = {line.split()[0]: line for line in out[1:]}
    assert by_month["2022-01"].split()[1:5] == ["restated", "3", "3,577.85", "USD"]
    assert "4.33 USD" in by_month["2022-01"] and "run by" in by_month["2022-01"] and "+0.0001" in by_month["2022-01"]
    assert by_month["2022-02"].split()[1:3] == ["incomplete", "0"] and "503 Service Unavailable" in by_month["2022-02"]
    assert by_month["2022-03"].split()[1:3] == ["draft", "3"]
    assert by_month["2022-04"].split()[1:3] == ["not", "run"]
    assert billing(world, "status", "--from", "2022-01", "--to", "2022-02", "--format", "csv") == 0
    csv_lines = capsys.readouterr().out.splitlines()
    assert csv_lines[0] == "month,state,documents,totals,unattributed,last_run,detail" and len(csv_lines) == 3
