"""Wrong command-line input: exit 2 with one line, before anything is read, priced, written or finalized."""
from __future__ import annotations

import os

import pytest
import yaml
from sqlalchemy import func, select

from billing import ledger
from billing.cli import check_output_folder, main
from helpers import small_focus_rows, small_org_data, write_focus_csv

PASSWORD = "s3cret-pw"

# (command line, environment, what the message must say). Placeholders: {org} a valid organization, {out} a
# fresh output folder, {ledger} a valid empty ledger, {file} a regular file, {dir} a folder, {binary} a binary file.
CASES = {
    "month 13": ("run --month 2022-13", {}, "--month: not a month: '2022-13' (the month is 01 to 12)"),
    "month without century": ("run --month 22-01", {}, "--month: not a month in the form YYYY-MM (e.g. 2022-01): '22-01'"),
    "year 0": ("run --month 0000-01", {}, "--month: not a month: '0000-01' (the year is 0001 to 9997)"),
    "last representable month": ("run --month 9999-12 --draft", {}, "--month: not a month: '9999-12' (the year is 0001 to 9997)"),
    "range backwards": ("backfill --from 2022-03 --to 2022-01", {},
                        "--from/--to: range ends before it starts: 2022-03 to 2022-01"),
    "range end not a month": ("backfill --from 2022-01 --to 2022-1x", {}, "--to: not a month"),
    "zero workers": ("run --month 2022-01 --workers 0", {}, "argument --workers: must be at least 1, got 0"),
    "negative workers": ("run --month 2022-01 --workers -3", {}, "argument --workers: must be at least 1, got -3"),
    "workers not a number": ("backfill --from 2022-01 --to 2022-01 --workers two", {},
                             "argument --workers: must be a whole number, at least 1; got 'two'"),
    "month missing": ("run", {}, "the following arguments are required: --month"),
    "unknown scheme": ("run --month 2022-01 --ledger foo://x", {}, "ledger foo://x: unknown database type 'foo'"),
    "driver not installed": (f"run --month 2022-01 --ledger mysql://u:{PASSWORD}@db.example/billing", {},
                             "ledger mysql://u:***@db.example/billing: its database driver (Python module "
                             "'MySQLdb') is not installed"),
    "other driver not installed": (f"run --month 2022-01 --ledger postgresql+pg8000://u:{PASSWORD}@h/db", {},
                                   "(Python module 'pg8000') is not installed"),
    "unparseable URL": ("run --month 2022-01 --ledger ::nope", {}, "not a database URL"),
    "empty URL": ("run --month 2022-01 --ledger=", {}, "--ledger is empty"),
    "ledger in memory": ("run --month 2022-01 --ledger sqlite://", {},
                         "an in-memory ledger forgets invoice numbers"),
    "ledger folder cannot be created": ("run --month 2022-01 --ledger sqlite:////proc/x/ledger.db", {},
                                        "cannot create its folder /proc/x"),
    "ledger folder inside a file": ("run --month 2022-01 --ledger sqlite:///{file}/ledger.db", {},
                                    "cannot create its folder"),
    "ledger unwritable": ("run --month 2022-01 --ledger sqlite:////proc/ledger.db", {},
                          "cannot open the SQLite file /proc/ledger.db (unable to open database file)"),
    "ledger is a folder": ("run --month 2022-01 --ledger sqlite:///{dir}", {}, "cannot open the SQLite file"),
    "ledger is not a database": ("run --month 2022-01 --ledger sqlite:///{binary}", {},
                                 "(file is not a database)"),
    "ledger from the environment": ("run --month 2022-01 --draft", {"BILLING_LEDGER_URL": "foo://x"},
                                    "ledger foo://x: unknown database type"),
    "ledger checked before Prefect starts": ("run --month 2022-01 --prefect --ledger foo://x", {},
                                             "unknown database type"),
    "out is a file": ("run --month 2022-01 --out {file}", {}, "is a file; give a folder"),
    "out inside a file": ("backfill --from 2022-01 --to 2022-02 --out {file}/out", {}, "which is a file"),
    "out cannot be created": ("run --month 2022-01 --out /proc/x/out", {},
                              "--out /proc/x/out: cannot create this folder"),
    "org is a folder": ("run --month 2022-01 --org {dir}", {}, "not a file; give the organization's YAML"),
    "org is a device": ("run --month 2022-01 --org /dev/null", {}, "--org /dev/null: not a file"),
    "org missing": ("run --month 2022-01 --org {dir}/nope.yaml", {}, "no such configuration file"),
    "org not text": ("run --month 2022-01 --org {binary}", {}, "not UTF-8 text: byte"),
    "report out is a file": ("report --out {file}", {}, "is a file; give a folder"),
    "report unknown scheme": ("report --ledger foo://x", {}, "unknown database type"),
    "validate binary": ("validate --org {binary}", {}, "not UTF-8 text: byte"),
    "sources check month": ("sources check --month 2022-00", {}, "--month: not a month"),
}


@pytest.fixture()
def world(tmp_path, monkeypatch):
    """A valid organization and empty ledger, and some things that are not what they are given as."""
    monkeypatch.delenv(ledger.LEDGER_ENV, raising=False)
    write_focus_csv(tmp_path / "focus" / "2022-01.csv", small_focus_rows())
    (tmp_path / "org.yaml").write_text(yaml.safe_dump(small_org_data(), sort_keys=False))
    (tmp_path / "a-file.txt").write_text("just text\n")
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "binary.bin").write_bytes(bytes(range(256)) * 8)
    ledger.open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}").dispose()
    return {"org": tmp_path / "org.yaml", "out": tmp_path / "out", "ledger": tmp_path / "ledger.db",
            "file": tmp_path / "a-file.txt", "dir": tmp_path / "a-folder", "binary": tmp_path / "binary.bin"}


def snapshot(root):
    return {str(p.relative_to(root)): (p.is_dir() or p.read_bytes()) for p in root.rglob("*")}


def invoice_count(path) -> int:
    engine = ledger.open_ledger(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(ledger.InvoiceRow)).scalar_one()
    finally:
        engine.dispose()


@pytest.mark.parametrize("command,env,expected", list(CASES.values()), ids=list(CASES))
def test_wrong_input_exits_two_with_one_line_and_changes_nothing(world, tmp_path, monkeypatch, capsys,
                                                                 command, env, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    argv = [arg.format(**world) for arg in command.split()]
    given = {arg.split("=")[0] for arg in argv}
    defaults = {"--org": str(world["org"]), "--out": str(world["out"])}
    if not env:
        defaults["--ledger"] = f"sqlite:///{world['ledger']}"
    if argv[0] in ("run", "backfill"):
        defaults["--workers"] = "1"
    argv += [part for option, value in defaults.items() if option not in given for part in (option, value)]
    before = snapshot(tmp_path)

    code = main(argv)

    err = capsys.readouterr().err
    assert code == 2, err
    assert "internal error" not in err and "Traceback" not in err and PASSWORD not in err
    assert expected in err
    lines = err.strip().splitlines()
    if lines[0].startswith("usage:"):   # argparse: its usage, then one error line
        assert lines[-1].startswith(f"billing {argv[0]}: error: ")
    else:
        assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert snapshot(tmp_path) == before   # nothing written: no output folder, no ledger, no snapshots
    assert invoice_count(world["ledger"]) == 0


def test_the_output_folder_check_leaves_nothing_behind(tmp_path):
    check_output_folder(tmp_path / "a" / "b" / "out")
    check_output_folder(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_good_command_line_still_runs(world, capsys):
    assert main(["run", "--month", "2022-01", "--org", str(world["org"]), "--out", str(world["out"]),
                 "--ledger", f"sqlite:///{world['ledger']}", "--workers", "2"]) == 0
    assert "3 new" in capsys.readouterr().out
    assert invoice_count(world["ledger"]) == 3
    assert len(list((world["out"] / "2022-01" / "invoices").glob("*.pdf"))) == 3
    assert not [p for p in world["out"].rglob(".billing-probe-*")]
    assert os.listdir(world["out"])
