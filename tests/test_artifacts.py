"""The artifacts a month's flow run leaves on the Prefect server: its summary and the table of its documents."""
from pathlib import Path

import pytest

from billing.config import parse_organization
from billing.months import Month
from billing.pipeline import RunOptions, run_month
from flows.artifacts import artifact_key, documents_table, failure_markdown, publish_month, summary_markdown
from helpers import small_focus_rows, small_org, small_org_data, write_focus_csv


@pytest.fixture()
def january(tmp_path):
    write_focus_csv(tmp_path / "focus" / "2022-01.csv", small_focus_rows()[:-1])
    org = parse_organization(small_org_data(), "org.yaml", tmp_path)
    out = tmp_path / "out"
    return org, out, run_month(org, Month(2022, 1), RunOptions(out_dir=out, workers=1, issue_on_closing_day=True))


def test_keys_are_lowercase_letters_digits_and_dashes():
    assert artifact_key("invoicing", "test-org", "2022-01") == "invoicing-test-org-2022-01"
    assert artifact_key("invoices", "Odd_Org", "2022-01") == "invoices-odd-org-2022-01"


def test_the_month_summary_says_what_the_notification_says(january):
    org, out, result = january
    text = summary_markdown(org, result, out)
    assert text.startswith("# Test Org: 2022-01 invoiced\n")
    assert "| Created | 3: TST-2022-0001, TST-ST-2022-0001, TST-2022-0002 |" in text
    assert "| Documents | 3: 2 invoices, 1 statement |" in text and "| Unchanged | 0 |" in text
    assert "| Totals | 3,577.85 USD |" in text
    assert "| Unattributed cloud cost | 4.33 USD |" in text
    assert f"| Files | `{out / '2022-01'}` (invoices/, invoices.csv, attribution.csv, reconciliation.csv) |" in text
    assert "## Warnings\n\n- 2022-01: 4.33 of cost is unattributed; see attribution.csv" in text
    assert "`invoices-test-org-2022-01`" in text


def test_the_documents_table_has_a_row_per_document(january):
    org, out, result = january
    rows = documents_table(result, out)
    assert [(r["number"], r["type"], r["party"], r["status"], r["total"], r["currency"]) for r in rows] == [
        ("TST-2022-0001", "invoice", "Alpha University", "finalized", "2022.60", "USD"),
        ("TST-ST-2022-0001", "statement", "Beta Lab", "finalized", "0.00", "USD"),
        ("TST-2022-0002", "invoice", "Big Grant", "finalized", "1555.25", "USD")]
    assert all(Path(r["pdf"]).is_file() and Path(r["pdf"]).is_absolute() for r in rows)


def test_markup_in_names_and_failures_is_shown_as_text(tmp_path):
    org = small_org(tmp_path, name="R|D *Hubs* <b>")
    text = failure_markdown(org, "2022-03", "cluster 'x': [see] `that` | here", tmp_path / "out")
    assert text.startswith("# R\\|D \\*Hubs\\* \\<b\\>: 2022-03 not invoiced\n")
    assert "cluster 'x': \\[see\\] \\`that\\` \\| here" in text


def test_outside_a_flow_run_nothing_is_published(january, monkeypatch):
    import prefect.artifacts

    def refuse(*args, **kwargs):
        raise AssertionError("an artifact outside a flow run")

    monkeypatch.setattr(prefect.artifacts, "create_markdown_artifact", refuse)
    monkeypatch.setattr(prefect.artifacts, "create_table_artifact", refuse)
    org, out, result = january
    publish_month(org, out, "2022-01", result)


@pytest.mark.e2e
def test_in_a_flow_run_each_month_is_published_and_a_refusal_is_only_a_warning(prefect_harness, january,
                                                                               monkeypatch):
    import prefect.artifacts
    from prefect import flow

    org, out, result = january
    created = []
    monkeypatch.setattr(prefect.artifacts, "create_markdown_artifact",
                        lambda markdown, key, description: created.append(("markdown", key)))
    monkeypatch.setattr(prefect.artifacts, "create_table_artifact",
                        lambda table, key, description: created.append(("table", key, len(table))))

    @flow
    def month_run(failure=None):
        publish_month(org, out, "2022-01", None if failure else result, failure)

    month_run()
    month_run(failure="2022-01 is incomplete: AWS did not answer")
    assert created == [("markdown", "invoicing-test-org-2022-01"), ("table", "invoices-test-org-2022-01", 3),
                       ("markdown", "invoicing-test-org-2022-01")]

    def unavailable(*args, **kwargs):
        raise RuntimeError("503 Service Unavailable")

    monkeypatch.setattr(prefect.artifacts, "create_markdown_artifact", unavailable)
    month_run()   # completes: the month is invoiced whether or not its summary could be recorded


def test_a_long_list_of_numbers_is_cut_short(january):
    org, out, result = january
    result.unchanged = [f"TST-2022-{n:04d}" for n in range(1, 31)]
    assert "| Unchanged | 30: TST-2022-0001, TST-2022-0002, " in summary_markdown(org, result, out)
    assert "TST-2022-0010 and 20 more |" in summary_markdown(org, result, out)
