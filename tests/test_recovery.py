"""Cost recovery: what each community's cloud cost was and what was billed for it, from the ledger.

The small organization of tests/helpers.py, January 2022 (see test_cli_run):
- alpha: shared-cluster compute 100.0000000001 + half of the 10.00 shared
  overhead, and its dedicated cluster 400.10 + 20.00 + 5.00 tax - 7.50
  credit: 522.6000000001; billed 1000 tier fee + 500 uplift + 522.60 cloud.
- beta: 50.25 + 5.00 = 55.25; billed 1500 + 55.25, all of it taken over
  by the grant (a statement of 0.00 and the funder's invoice of 1555.25).
- unattributed: 3.33 (a hub tag no hub has) + 1.00 (an unknown
  sub-account) = 4.33; 582.1800000001 in all.
"""
import dataclasses
from decimal import Decimal as D

import pytest

from billing import ledger
from billing.evidence import MonthEvidence
from billing.ledger import Line
from billing.recovery import UNATTRIBUTED_ROW, line_column, recovery_rows, write_recovery_plot
from billing.reports import plot_title
from helpers import billing_in, read_csv, small_focus_rows, two_month_world, write_focus_csv
from pricing_models.base import SECTIONS

PNG = b"\x89PNG\r\n\x1a\n"



@pytest.fixture()
def world(tmp_path, ledger_url):
    return two_month_world(tmp_path, ledger_url)


def billing(world, *args) -> int:
    return billing_in(world, *args)


def run(world, month: str, issue_date: str) -> int:
    return billing(world, "run", "--month", month, "--workers", "1", "--issue-date", issue_date)


def recovery(world) -> dict[tuple[str, str], dict]:
    assert billing(world, "report") == 0
    return {(r["month"], r["community"]): r for r in read_csv(world["out"] / "recovery.csv")}


def restate_alpha_compute(world, cost="150.00"):
    rows = small_focus_rows()
    rows[0][9] = cost            # alpha's compute on the shared cluster (was 100.0000000001)
    write_focus_csv(world["tmp"] / "focus" / "2022-01.csv", rows)


def ledger_contents(world):
    engine = ledger.open_ledger(world["ledger"])
    try:
        documents, kept = ledger.finalized_month(engine, "2022-01")
    finally:
        engine.dispose()
    return documents, MonthEvidence.from_json(kept.body)


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_recovery_by_hand_for_a_month(world, capsys):
    assert run(world, "2022-01", "2022-02-10") == 0
    rows = recovery(world)
    assert "recovery.csv" in capsys.readouterr().out
    assert list(rows) == [("2022-01", "alpha"), ("2022-01", "beta"), ("2022-01", UNATTRIBUTED_ROW)]
    assert rows[("2022-01", "alpha")] == {
        "month": "2022-01", "community": "alpha", "currency": "USD", "cloud_cost_incurred": "522.6000000001",
        "cloud_passthrough": "522.60", "markup": "0.00", "fees": "1500.00", "caps_and_credits": "0.00",
        "prior_period_adjustments": "0.00", "subsidies": "0.00", "prepaid_draws": "0.00",
        "billed_to_community": "2022.60",
        "grant_funded": "0.00", "recovered": "2022.60", "recovered_minus_cost": "1499.9999999999",
        "recovery_ratio": "3.8703", "note": ""}
    beta = rows[("2022-01", "beta")]
    assert (beta["cloud_cost_incurred"], beta["cloud_passthrough"], beta["fees"], beta["subsidies"],
            beta["billed_to_community"], beta["grant_funded"], beta["recovered"], beta["recovered_minus_cost"],
            beta["recovery_ratio"]) == ("55.25", "55.25", "1500.00", "-1555.25", "0.00", "1555.25", "1555.25",
                                        "1500.00", "28.1493")
    unattributed = rows[("2022-01", UNATTRIBUTED_ROW)]
    assert (unattributed["cloud_cost_incurred"], unattributed["recovered"], unattributed["recovered_minus_cost"],
            unattributed["recovery_ratio"]) == ("4.33", "0.00", "-4.33", "0.00")
    assert "attribution.csv" in unattributed["note"]

    # The rows of the month add up to its input cost, and what was billed to what its documents total.
    input_total = sum(D(r["input_total"]) for r in read_csv(world["out"] / "2022-01" / "reconciliation.csv"))
    assert sum(D(r["cloud_cost_incurred"]) for r in rows.values()) == input_total == D("582.1800000001")
    documents = sum(D(r["total"]) for r in read_csv(world["out"] / "2022-01" / "invoices.csv"))
    assert sum(D(r["recovered"]) for r in rows.values()) == documents == D("3577.85")

    png = (world["out"] / "recovery.png").read_bytes()
    assert png[:8] == PNG
    assert billing(world, "report") == 0
    assert (world["out"] / "recovery.png").read_bytes() == png          # reproducible, byte for byte


def test_a_restated_and_amended_month_counts_once(world, capsys):
    """A credit note cancels the original: the month counts its replacement, against the restated cost."""
    assert run(world, "2022-01", "2022-02-10") == 0
    restate_alpha_compute(world)
    assert billing(world, "amend", "--month", "2022-01", "--reason", "AWS restated January compute",
                   "--issue-date", "2022-03-01", "--workers", "1") == 0
    assert "TST-CN-2022-0001 credit note community alpha -2022.60 USD" in capsys.readouterr().out
    rows = recovery(world)
    alpha = rows[("2022-01", "alpha")]
    assert (alpha["cloud_cost_incurred"], alpha["cloud_passthrough"], alpha["fees"], alpha["billed_to_community"],
            alpha["recovered"], alpha["recovery_ratio"]) == ("572.60", "572.60", "1500.00", "2072.60",
                                                             "2072.60", "3.6196")
    assert sum(D(r["cloud_cost_incurred"]) for r in rows.values()) == D("632.18")   # the restated input
    assert sum(D(r["recovered"]) for r in rows.values()) == D("2072.60") + D("1555.25")


def test_a_difference_carried_to_the_next_invoice_counts_in_the_month_it_corrects(world, capsys):
    assert run(world, "2022-01", "2022-02-10") == 0
    restate_alpha_compute(world)
    assert billing(world, "amend", "--month", "2022-01", "--reason", "late restatement", "--policy",
                   "next-invoice", "--workers", "1") == 0
    january = recovery(world)[("2022-01", "alpha")]
    assert (january["cloud_cost_incurred"], january["cloud_passthrough"], january["prior_period_adjustments"],
            january["recovered"]) == ("572.60", "522.60", "0.00", "2022.60")   # not billed yet
    assert run(world, "2022-02", "2022-03-10") == 0
    rows = recovery(world)
    january, february = rows[("2022-01", "alpha")], rows[("2022-02", "alpha")]
    assert (january["prior_period_adjustments"], january["billed_to_community"], january["recovery_ratio"]) == (
        "50.00", "2072.60", "3.6196")
    # February's invoice bears the 50.00 (2572.10); it counts in January, whose cost it corrects.
    assert (february["prior_period_adjustments"], february["billed_to_community"]) == ("0.00", "2522.10")
    documents = [r for m in ("2022-01", "2022-02") for r in read_csv(world["out"] / m / "invoices.csv")]
    assert sum(D(r["recovered"]) for r in rows.values()) == sum(D(r["total"]) for r in documents)


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_a_voided_invoice_recovers_nothing(world):
    assert run(world, "2022-01", "2022-02-10") == 0
    assert billing(world, "void", "TST-2022-0001", "--reason", "wrong customer", "--workers", "1",
                   "--issue-date", "2022-02-11") == 0
    alpha = recovery(world)[("2022-01", "alpha")]
    assert (alpha["cloud_cost_incurred"], alpha["recovered"], alpha["recovered_minus_cost"],
            alpha["recovery_ratio"]) == ("522.6000000001", "0.00", "-522.6000000001", "0.00")


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_missing_evidence_zero_cost_and_two_currencies_leave_the_ratio_empty(world):
    assert run(world, "2022-01", "2022-02-10") == 0
    documents, evidence = ledger_contents(world)

    unknown = {(r.month, r.community): r for r in recovery_rows(documents, {"2022-01": None})}
    assert set(unknown) == {("2022-01", "alpha"), ("2022-01", "beta")}       # no unattributed row either
    assert unknown[("2022-01", "alpha")].recovered == D("2022.60")
    assert unknown[("2022-01", "alpha")].cloud_cost_incurred is None
    assert unknown[("2022-01", "alpha")].recovery_ratio is None
    assert "no evidence" in unknown[("2022-01", "alpha")].note

    no_beta = dataclasses.replace(evidence, attribution=tuple(a for a in evidence.attribution
                                                              if a.community != "beta"))
    beta = {r.community: r for r in recovery_rows(documents, {"2022-01": no_beta})}["beta"]
    assert (beta.cloud_cost_incurred, beta.recovered, beta.recovery_ratio) == (D(0), D("1555.25"), None)

    in_euros = [dataclasses.replace(d, currency="EUR") if d.party_id == "alpha" else d for d in documents]
    rows = {(r.community, r.currency): r for r in recovery_rows(in_euros, {"2022-01": evidence})}
    cost, billed = rows[("alpha", "USD")], rows[("alpha", "EUR")]
    assert (cost.cloud_cost_incurred, cost.recovered, billed.cloud_cost_incurred, billed.recovered) == (
        D("522.6000000001"), D(0), D(0), D("2022.60"))
    assert cost.recovery_ratio is None and billed.recovery_ratio is None
    assert "EUR, USD" in cost.note and cost.note == billed.note

    # The plot draws what it knows: a panel per currency, no cost line nor ratio where the cost is unknown.
    for name, found in [("unknown.png", unknown.values()), ("two.png", rows.values())]:
        write_recovery_plot(world["tmp"] / name, list(found), "Data $cience")
        assert (world["tmp"] / name).read_bytes()[:8] == PNG


def test_every_charge_kind_has_a_recovery_column():
    for kind in SECTIONS:
        line = Line(SECTIONS[kind], kind, "x", D(1), D(1))
        assert line_column(line) in {"cloud_passthrough", "markup", "fees", "caps_and_credits",
                                     "prior_period_adjustments", "subsidies", "prepaid_draws"}, kind
    assert line_column(Line("Prepaid", "prepaid", "x", D(-1), D(-1))) == "prepaid_draws"
    assert line_column(Line("Adjustments", "cap", "x", D(-1), D(-1))) == "caps_and_credits"
    assert line_column(Line("Service fees", "usage", "x", D(1), D(1))) == "fees"


def test_plot_titles_escape_dollar_signs():
    assert plot_title("Data $cience", "cost recovery") == r"Data \$cience: cost recovery"


def test_charges_paid_from_a_prepaid_balance_are_recovered():
    """A draw on a balance bought in advance is money received, not a credit: the month is recovered."""
    import datetime as dt

    from billing.ledger import Invoice

    lines = tuple(Line(SECTIONS[k], k, k, D(a), D(a), community="pre")
                  for k, a in [("fee", "2250.00"), ("cloud", "540.66"), ("prepaid", "-2790.66")])
    statement = Invoice("community", "pre", "2022-01", "USD", dt.date(2022, 2, 6), dt.date(2022, 3, 8), lines,
                        {"display_name": "pre"}, {}, "fp", status="finalized", number="ST-1")
    [row] = recovery_rows([statement], {"2022-01": None})
    assert (row.fees, row.cloud_passthrough, row.caps_and_credits, row.prepaid_draws) == (
        D("2250.00"), D("540.66"), D("0"), D("-2790.66"))
    assert row.billed_to_community == D("0.00")
    assert row.recovered == D("2790.66")
