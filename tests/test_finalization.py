"""Nothing is committed before every document exists; finalized months keep the files they were invoiced from."""
import csv
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session

from billing import ledger
from billing.cli import main
from helpers import small_focus_rows, small_org_data, write_focus_csv


@pytest.fixture()
def org_path(tmp_path) -> Path:
    write_focus_csv(tmp_path / "focus" / "2022-01.csv", small_focus_rows())
    path = tmp_path / "org.yaml"
    path.write_text(yaml.safe_dump(small_org_data(), sort_keys=False))
    return path


def run(org_path, *args):
    return main(["run", "--org", str(org_path), "--out", str(org_path.parent / "out"), "--workers", "1",
                 "--issue-date", "closing-day",
                 "--month", "2022-01", *args])


def ledger_counts(out: Path) -> tuple[int, list]:
    engine = ledger.open_ledger(f"sqlite:///{out / 'ledger.db'}")
    with Session(engine) as s:
        invoices = s.scalar(select(func.count()).select_from(ledger.InvoiceRow))
        sequences = sorted((r.series, r.year, r.last_number) for r in s.scalars(select(ledger.SequenceRow)))
    engine.dispose()
    return invoices, sequences


TAKEN = [("invoice", 2022, 2), ("statement", 2022, 1)]   # alpha, the grant; beta's statement (nothing due)


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and p.name not in ("ledger.db", ".ledger.db.lock"))


def test_a_document_that_cannot_be_rendered_takes_no_number(org_path, monkeypatch, capsys):
    import invoices.render as render

    real = render.render_pdf

    def broken(doc, path, locale="en_US"):
        if doc.bill_to.id == "beta":
            raise render.RenderError(f"invoice {doc.number}: the font exploded")
        return real(doc, path, locale)

    monkeypatch.setattr(render, "render_pdf", broken)
    out = org_path.parent / "out"
    assert run(org_path) == 1
    err = capsys.readouterr().err
    assert "nothing was finalized and no number was taken" in err and "the font exploded" in err
    assert ledger_counts(out) == (0, [])
    assert files_under(out) == []

    monkeypatch.setattr(render, "render_pdf", real)
    assert run(org_path) == 0
    assert ledger_counts(out) == (3, TAKEN)
    assert sorted(p.name for p in (out / "2022-01" / "invoices").glob("*.pdf")) == [
        "TST-2022-0001.pdf", "TST-2022-0002.pdf", "TST-ST-2022-0001.pdf"]


def test_a_crash_after_the_commit_is_repaired_by_the_next_run(org_path, monkeypatch):
    from billing.fileio import StagedFiles

    def crash(self):
        raise KeyboardInterrupt  # the process dies between the commit and moving the files into place

    monkeypatch.setattr(StagedFiles, "publish", crash)
    out = org_path.parent / "out"
    assert run(org_path) == 130
    assert ledger_counts(out)[0] == 3
    assert not (out / "2022-01" / "invoices.csv").exists()
    monkeypatch.undo()
    assert run(org_path) == 0
    assert ledger_counts(out) == (3, TAKEN)
    assert len(list((out / "2022-01" / "invoices").glob("TST-*.pdf"))) == 3
    assert not list((out / ".staging").iterdir())


def read(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def restate(org_path, row: int, cost: str) -> None:
    rows = small_focus_rows()
    rows[row][9] = cost
    write_focus_csv(org_path.parent / "focus" / "2022-01.csv", rows)


def test_a_restatement_below_a_cent_keeps_the_finalized_files_and_reports_it(org_path, capsys):
    out = org_path.parent / "out"
    month = out / "2022-01"
    assert run(org_path) == 0
    before = {name: (month / name).read_bytes() for name in ("attribution.csv", "reconciliation.csv", "invoices.csv")}
    restate(org_path, 0, "100.0001000001")   # alpha's compute, +0.0001
    capsys.readouterr()
    assert run(org_path) == 0
    output = capsys.readouterr().out
    assert "the data changed since the month was finalized, but no invoice changes to the cent" in output
    assert "USD then, 582.1801000001 now (+0.0001)" in output
    assert "community alpha (invoice TST-2022-0001): exact charges 2022.6000000001 USD then, 2022.6001000001 now " \
           "(+0.0001)" in output
    assert {name: (month / name).read_bytes() for name in before} == before
    restated = read(month / "attribution.restated.csv")
    alpha = [r for r in restated if r["hub"] == "alpha-shared" and r["allocation"] == "direct"]
    assert alpha[0]["cost"] == "100.0001000001"
    assert read(month / "reconciliation.restated.csv")[0]["input_total"] == "582.1801000001"
    assert ledger_counts(out) == (3, TAKEN)

    restate(org_path, 0, "100.0000000001")   # the cloud takes it back: the month is as invoiced again
    assert run(org_path) == 0
    assert not (month / "attribution.restated.csv").exists() and not (month / "reconciliation.restated.csv").exists()


def test_a_restatement_that_changes_money_is_refused_with_the_exact_differences(org_path, capsys):
    out = org_path.parent / "out"
    month = out / "2022-01"
    assert run(org_path) == 0
    attribution = (month / "attribution.csv").read_bytes()
    restate(org_path, 1, "60.25")   # beta's compute, +10.00
    assert run(org_path) == 1
    err = capsys.readouterr().err
    assert "community beta: statement TST-ST-2022-0001 total 0.00 USD, recomputed 0.00 (difference +0.00; the lines " \
           "differ)" in err
    assert "funder grant: invoice TST-2022-0002 total 1555.25 USD, recomputed 1565.25 (difference +10.00)" in err
    assert "funder grant (invoice TST-2022-0002): exact charges 1555.25 USD then, 1565.25 now (+10)" in err
    assert "billing amend --month 2022-01" in err
    assert (month / "attribution.csv").read_bytes() == attribution
    assert (month / "attribution.restated.csv").exists()
    assert ledger_counts(out) == (3, TAKEN)


def test_a_ledger_from_before_migrations_is_upgraded_in_place(tmp_path, ledger_url):
    """A ledger written by the first release (tables from create_all, no Alembic) keeps every invoice."""
    import datetime as dt
    from decimal import Decimal as D

    from legacy import ledger_v0 as v0

    engine = create_engine(ledger_url)
    v0.Base.metadata.create_all(engine)
    now = dt.datetime(2022, 2, 1, tzinfo=dt.timezone.utc)
    with Session(engine) as s, s.begin():
        row = v0.InvoiceRow(party_kind="community", party_id="alpha", month="2022-01", status="finalized",
                            number="TST-2022-0001", currency="USD", issue_date=dt.date(2022, 2, 1),
                            due_date=dt.date(2022, 3, 3), subtotal=D("12.50"), total=D("12.50"), content_hash="h",
                            data_fingerprint="fp", bill_to='{"id": "alpha", "name": "A"}', issuer="{}", notes="[]",
                            created_at=now, finalized_at=now)
        row.lines = [v0.LineRow(position=0, section="Service fees", kind="fee", description="Fee",
                                amount_exact=D("12.5000001"), amount=D("12.50"), details="{}")]
        s.add(row)
        s.add(v0.SequenceRow(year=2022, last_number=1))
    engine.dispose()

    engine = ledger.open_ledger(ledger_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == ledger.database.head_revision()
    [invoice] = ledger.month_invoices(engine, "2022-01")
    assert invoice.number == "TST-2022-0001" and invoice.total == D("12.50")
    assert invoice.lines[0].amount_exact == D("12.5000001")
    assert invoice.document_type == "invoice" and invoice.status == "finalized"
    [event] = ledger.history(engine, "TST-2022-0001")
    assert (event.event, event.actor, event.at.date()) == ("finalized", "(before the event log)", dt.date(2022, 2, 1))
    with Session(engine) as s:   # the old per-year counter became the invoice series
        assert [(r.series, r.year, r.last_number) for r in s.scalars(select(ledger.SequenceRow))] == [
            ("invoice", 2022, 1)]
    engine.dispose()


def test_the_migrations_make_exactly_the_schema_the_code_uses(tmp_path, ledger_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = ledger.open_ledger(ledger_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), ledger.Base.metadata)
    engine.dispose()
    assert diff == []


def test_two_runs_opening_an_empty_ledger_at_once_both_work(tmp_path, ledger_url):
    import threading

    barrier, errors = threading.Barrier(3), []

    def opener():
        barrier.wait()
        try:
            ledger.open_ledger(ledger_url).dispose()
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=opener) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_run_that_takes_numbers_meanwhile_makes_the_month_plan_again(org_path, monkeypatch):
    """Numbers are planned, PDFs rendered with them, and the commit checks the ledger still gives them."""
    from pypdf import PdfReader

    import billing.closing as closing
    from billing.config import load_organization
    from billing.months import Month
    from billing.pipeline import RunOptions, run_month

    rows = small_focus_rows()
    write_focus_csv(org_path.parent / "focus" / "2022-02.csv", [r[:3] + ["2022-02-01T00:00:00Z"] * 2 + r[5:]
                                                               for r in rows[:-1]])
    org, out = load_organization(org_path), org_path.parent / "out"
    opts = RunOptions(out_dir=out, workers=1, issue_date=__import__("datetime").date(2022, 3, 10))
    real_render, calls = closing.render_plan, []

    def render_while_another_run_finalizes(plan, opts_, workers=None):
        staged = real_render(plan, opts_, workers)
        if not calls:
            calls.append(plan.record.created)
            run_month(org, Month(2022, 2), opts)      # takes TST-2022-0001.. while January is being rendered
        return staged

    monkeypatch.setattr(closing, "render_plan", render_while_another_run_finalizes)
    january = run_month(org, Month(2022, 1), opts)
    assert calls == [["TST-2022-0001", "TST-ST-2022-0001", "TST-2022-0002"]]     # the first plan
    assert january.created == ["TST-2022-0003", "TST-ST-2022-0002", "TST-2022-0004"]  # what it committed
    for number in january.created:
        text = " ".join(p.extract_text() for p in PdfReader(out / "2022-01" / "invoices" / f"{number}.pdf").pages)
        assert number in text
    assert not (out / "2022-01" / "invoices" / "TST-2022-0001.pdf").exists()


def test_a_rerun_of_an_unchanged_month_writes_nothing_and_a_missing_file_is_written_again(org_path, monkeypatch):
    from billing import closing

    out = org_path.parent / "out"
    assert run(org_path) == 0
    written = {p: p.stat().st_mtime_ns for p in (out / "2022-01").rglob("*") if p.is_file()}
    recorded = []
    monkeypatch.setattr(closing.ledger_mod, "recording_month",
                        lambda *a, **k: recorded.append(a) or pytest.fail("the rerun opened a write transaction"))
    assert run(org_path) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "2022-01").rglob("*") if p.is_file()} == written
    assert not recorded
    monkeypatch.undo()
    (out / "2022-01" / "attribution.csv").unlink()
    assert run(org_path) == 0
    assert (out / "2022-01" / "attribution.csv").exists()
    assert ledger_counts(out) == (3, TAKEN)
