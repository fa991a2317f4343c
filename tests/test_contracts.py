"""Pricing that follows contracts over time: plan histories, partial months, yearly fees, minimums, caps,
one-offs, prepaid balances, billable users, and grants that run out."""
import csv
import datetime as dt
from decimal import Decimal as D

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.attribution import AttributedCost
from billing.cli import main
from billing.config import parse_organization
from billing.months import Month
from billing.pricing import price_month, state_before
from billing.usage import MonthUsage
from helpers import small_focus_rows, small_org_data, write_focus_csv
from pricing_models.base import PricingState

JAN, FEB = Month(2022, 1), Month(2022, 2)
FEES = {"education": "1000.00", "research": "1500.00", "partnership": "4166.67"}


def org(tmp_path, **changes):
    data = small_org_data()
    for key, value in changes.items():
        data[key] = value
    return parse_organization(data, "org.yaml", tmp_path)


def cost(community, hub, amount, cluster="shared"):
    return AttributedCost("aws", "999900000000", cluster, hub, community, "compute", "direct", "USD", D(amount))


def lines(charges, kind=None):
    return [(c.kind, c.description, c.rounded) for c in charges if kind is None or c.kind == kind]


# ---- plans over time, partial months --------------------------------------------------------


def test_a_plan_history_prices_each_month_with_the_plan_in_force(tmp_path):
    data = small_org_data()
    data["pricing_plans"].append({"id": "flat", "name": "Flat", "charges": [
        {"model": "fixed_fee", "amount": "700.00"}, {"model": "cloud_passthrough"}]})
    data["communities"][0]["pricing_plan"] = [{"from": "2022-01", "plan": "alpha-2022"}, {"from": "2022-02", "plan": "flat"}]
    o = parse_organization(data, "org.yaml", tmp_path)
    alpha = o.communities[0]
    assert alpha.plan_for("2022-01") == "alpha-2022" and alpha.plan_for("2022-06") == "flat"
    assert alpha.plan_for("2021-12") is None and not o.is_active(alpha, "2021-12")
    jan = price_month(o, JAN, [], MonthUsage("x"))["alpha"]
    feb = price_month(o, FEB, [], MonthUsage("x"))["alpha"]
    assert lines(jan, "fee") == [("fee", "Monthly service fee (Education tier)", D("1000.00"))]
    assert lines(feb, "fee") == [("fee", "Monthly service fee", D("700.00"))]


def test_a_contract_that_starts_mid_month_pays_its_days(tmp_path):
    data = small_org_data()
    data["communities"][0]["active_from"] = "2022-01-14"
    o = parse_organization(data, "org.yaml", tmp_path)
    assert o.active_days(o.communities[0], JAN) == (18, 31)
    charges = price_month(o, JAN, [], MonthUsage("x"))["alpha"]
    fee = next(c for c in charges if c.kind == "fee")
    assert fee.description == "Monthly service fee (Education tier): 18 of 31 days of $1,000.00"
    assert fee.amount == D(1000) * 18 / 31 and fee.rounded == D("580.65")
    assert (fee.quantity, fee.unit) == (D(18), "days")
    # the uplift for the dedicated cluster applies to what is charged: 50% of 580.65
    assert next(c for c in charges if c.kind == "uplift").rounded == D("290.33")
    # a plan that does not prorate charges the month in full
    data["pricing_plans"][0]["prorate"] = "none"
    o = parse_organization(data, "org.yaml", tmp_path)
    assert next(c for c in price_month(o, JAN, [], MonthUsage("x"))["alpha"] if c.kind == "fee").rounded == D("1000.00")


@settings(max_examples=60, deadline=None)
@given(day=st.integers(2, 28), fee=st.decimals(min_value=D("0.01"), max_value=D("99999.99"), places=2))
def test_prorating_adds_up(tmp_path_factory, day, fee):
    """A contract ending the day before another starts: the two prorated fees make the month's fee (exactly, and
    within a cent once each line is rounded)."""
    from pricing_models.base import PricingContext
    from pricing_models.fees import fee_charge

    month = Month(2022, 2)
    total = 28
    first = PricingContext(month, None, None, "USD", active_days=day - 1, days_in_month=total)
    second = PricingContext(month, None, None, "USD", active_days=total - day + 1, days_in_month=total)
    a, b = fee_charge(first, "Fee", fee), fee_charge(second, "Fee", fee)
    assert abs(a.amount + b.amount - fee) < D("1e-40")
    assert abs(a.rounded + b.rounded - fee) <= D("0.01")


# ---- yearly fees, minimums, caps ----------------------------------------------------------------------


def plan_org(tmp_path, charges, **community):
    data = small_org_data()
    data["pricing_plans"][0]["charges"] = charges
    data["communities"][0].update(community)
    return parse_organization(data, "org.yaml", tmp_path)


def test_a_yearly_fee_is_charged_in_its_billing_month_only(tmp_path):
    o = plan_org(tmp_path, [{"model": "fixed_fee", "amount": "15000.00", "every": "year", "billing_month": 2,
                             "description": "Annual membership"}, {"model": "cloud_passthrough"}])
    assert lines(price_month(o, JAN, [], MonthUsage("x"))["alpha"]) == []
    assert lines(price_month(o, FEB, [], MonthUsage("x"))["alpha"]) == [("fee", "Annual membership", D("15000.00"))]


def test_a_monthly_minimum_tops_up_the_fees(tmp_path):
    o = plan_org(tmp_path, [{"model": "fixed_fee", "amount": "100.00"}, {"model": "cloud_passthrough"},
                            {"model": "minimum", "amount": "250.00"}])
    charges = price_month(o, JAN, [cost("alpha", "alpha-shared", "500")], MonthUsage("x"))["alpha"]
    assert lines(charges, "minimum") == [
        ("minimum", "Minimum commitment of $250.00 a month: true-up ($100.00 charged)", D("150.00"))]
    o = plan_org(tmp_path, [{"model": "fixed_fee", "amount": "300.00"}, {"model": "minimum", "amount": "250.00"}])
    assert lines(price_month(o, JAN, [], MonthUsage("x"))["alpha"], "minimum") == []


def test_a_yearly_minimum_is_settled_in_december_against_the_year(tmp_path):
    o = plan_org(tmp_path, [{"model": "fixed_fee", "amount": "100.00"},
                            {"model": "minimum", "amount": "2000.00", "period": "year"}])
    state = PricingState(year_charges={("alpha", "fee"): D("1100.00")})          # January to November
    assert lines(price_month(o, Month(2022, 11), [], MonthUsage("x"), state)["alpha"], "minimum") == []
    december = price_month(o, Month(2022, 12), [], MonthUsage("x"), state)["alpha"]
    assert lines(december, "minimum") == [
        ("minimum", "Minimum commitment of $2,000.00 a year: true-up ($1,200.00 charged)", D("800.00"))]


def test_a_contract_ending_mid_year_settles_its_yearly_minimum_in_its_last_month(tmp_path):
    o = plan_org(tmp_path, [{"model": "fixed_fee", "amount": "100.00"},
                            {"model": "minimum", "amount": "2000.00", "period": "year"}], active_until="2022-06")
    state = PricingState(year_charges={("alpha", "fee"): D("500.00")})
    assert lines(price_month(o, Month(2022, 6), [], MonthUsage("x"), state)["alpha"], "minimum")[0][2] == D("1400.00")


# ---- one-offs and prepaid balances ---------------------------------------------------------------------


def test_one_offs_and_a_prepaid_balance_on_the_invoice(tmp_path):
    from billing.ledger import build_invoices
    from billing.pricing import one_off_charges, record_draws

    data = small_org_data()
    data["communities"][0]["prepaid"] = [{"id": "pp-alpha", "amount": "2500.00", "from": "2022-01"}]
    data["one_offs"] = [{"party": "community:alpha", "month": "2022-01", "description": "Onboarding and setup",
                         "amount": "500.00"},
                        {"party": "funder:grant", "month": "2022-01", "description": "Goodwill credit",
                         "amount": "100.00", "kind": "credit"}]
    o = parse_organization(data, "org.yaml", tmp_path)
    state = PricingState()
    jan = price_month(o, JAN, [cost("beta", "beta-shared", "50")], MonthUsage("x"), state)
    invoices = {i.party_id: i for i in build_invoices(o, JAN, jan, "fp", issue_date=dt.date(2022, 2, 6),
                                                       extra=one_off_charges(o, JAN))}
    alpha = invoices["alpha"]
    assert [(l.section, l.description, l.amount) for l in alpha.lines if l.kind in ("one_off_charge", "prepaid")] == [
        ("One-off charges", "Onboarding and setup", D("500.00")),
        ("Prepaid credit", "Prepaid credit pp-alpha: $1,500.00 drawn, $1,000.00 remaining", D("-1500.00"))]
    assert alpha.total == D("500.00")      # the fee (1000 + 50% uplift) paid from the prepaid balance
    assert [(l.section, l.amount) for l in invoices["grant"].lines if l.kind == "one_off_credit"] == [
        ("Credits", D("-100.00"))]
    feb = price_month(o, FEB, [], MonthUsage("x"), state)["alpha"]
    assert lines(feb, "prepaid") == [("prepaid", "Prepaid credit pp-alpha: $1,000.00 drawn, $0.00 remaining",
                                      D("-1000.00"))]
    assert lines(price_month(o, Month(2022, 3), [], MonthUsage("x"), state)["alpha"], "prepaid") == []


def test_billable_users_leave_out_staging_hubs_and_staff(tmp_path):
    data = small_org_data()
    data["pricing_plans"][0]["charges"] = [{"model": "graduated_usage", "tiers": [{"up_to": None, "unit_price": "2.00"}]}]
    data["hubs"][0]["billable_users"] = False
    o = parse_organization(data, "org.yaml", tmp_path)
    usage = MonthUsage("x", mau={"alpha-shared": 40, "alpha-prod": 30}, staff={"alpha-prod": 3})
    [line] = price_month(o, JAN, [], usage)["alpha"]
    assert (line.quantity, line.rounded) == (D(27), D("54.00"))


def test_a_staff_column_in_the_mau_file(tmp_path):
    from billing.usage import load_usage

    (tmp_path / "mau.csv").write_text("month,hub,mau,staff\n2022-01,alpha-prod,30,3\n2022-01,beta-shared,5,\n")
    o = org(tmp_path, usage={"mau": "mau.csv"})
    usage = load_usage(o, JAN)
    assert usage.mau == {"alpha-prod": 30, "beta-shared": 5} and usage.staff == {"alpha-prod": 3, "beta-shared": 0}
    (tmp_path / "mau.csv").write_text("month,hub,mau,staff\n2022-01,alpha-prod,3,30\n")
    from billing.errors import InputError

    with pytest.raises(InputError, match="field staff: '30' is not a whole number of users between 0 and the hub's mau 3"):
        load_usage(o, JAN)


# ---- grants that run out -------------------------------------------------------------------------------


def award_org(tmp_path, amount="4000.00", start="2022-01", until="2022-12"):
    data = small_org_data()
    data["funders"][0]["awards"] = [{"id": "gc-2022", "amount": amount, "currency": "USD", "from": start,
                                     "until": until}]
    return parse_organization(data, "org.yaml", tmp_path)


def test_an_award_runs_out_and_the_community_pays_the_rest(tmp_path):
    o = award_org(tmp_path, amount="4000.00")
    state = PricingState()
    paid = []
    for month in (JAN, FEB, Month(2022, 3)):
        charges = price_month(o, month, [cost("beta", "beta-shared", "55.25")], MonthUsage("x"), state)["beta"]
        paid.append(sum((c.rounded for c in charges if c.bill_to == "grant"), D(0)))
        if month == Month(2022, 3):
            march = charges
    assert paid == [D("1555.25"), D("1555.25"), D("889.50")]
    own = next(c for c in march if c.kind == "subsidy" and c.bill_to is None)
    assert own.rounded == D("-889.50")
    assert own.description.endswith("limited to the $889.50 left on award gc-2022, now used up; the rest is yours")
    assert state.award_drawn == {"gc-2022": D("4000.00")}
    assert sum(c.rounded for c in march if c.bill_to is None) == D("665.75")   # beta pays the rest
    april = price_month(o, Month(2022, 4), [cost("beta", "beta-shared", "55.25")], MonthUsage("x"), state)["beta"]
    assert not [c for c in april if c.kind == "subsidy"]


def test_no_award_in_force_no_subsidy(tmp_path):
    o = award_org(tmp_path, start="2022-05")
    assert not [c for c in price_month(o, JAN, [], MonthUsage("x"))["beta"] if c.kind == "subsidy"]


@settings(max_examples=50, deadline=None)
@given(amount=st.decimals(min_value=D("1.00"), max_value=D("20000.00"), places=2),
       costs=st.lists(st.decimals(min_value=D("0"), max_value=D("3000"), places=4), min_size=1, max_size=8))
def test_a_drawn_down_award_never_goes_negative(tmp_path_factory, amount, costs):
    o = award_org(tmp_path_factory.mktemp("award"), amount=str(amount))
    state = PricingState()
    for i, c in enumerate(costs):
        price_month(o, Month(2022, i + 1), [cost("beta", "beta-shared", str(c))], MonthUsage("x"), state)
        drawn = state.award_drawn.get("gc-2022", D(0))
        assert D(0) <= drawn <= amount


def test_what_earlier_months_used_up_comes_from_the_ledger(tmp_path):
    """Credit notes count negatively: a credited invoice and its replacement count once."""
    from billing.ledger import build_invoices, credit_note_for

    o = award_org(tmp_path, amount="4000.00")
    charges = price_month(o, JAN, [], MonthUsage("x"), PricingState())
    docs = [d.__class__(**{**d.__dict__, "status": "finalized", "number": f"N{i}"})
            for i, d in enumerate(build_invoices(o, JAN, charges, "fp", issue_date=dt.date(2022, 2, 6)))]
    grant = next(d for d in docs if d.party_id == "grant")
    note = credit_note_for(grant, issue_date=dt.date(2022, 3, 1), reason="x")
    assert state_before(docs, FEB).award_drawn == {"gc-2022": D("1500.00")}
    assert state_before(docs + [note], FEB).award_drawn == {"gc-2022": D("0.00")}
    assert state_before(docs, FEB).year_charges[("alpha", "fee")] == D("1000.00")
    assert state_before(docs, JAN).award_drawn == {}


# ---- through the CLI: adjust, grants, simulate ----------------------------------------------------------


@pytest.fixture()
def world(tmp_path):
    for i, month in enumerate(("2022-01", "2022-02", "2022-03")):
        write_focus_csv(tmp_path / "focus" / f"{month}.csv",
                        [r[:3] + [f"{month}-01T00:00:00Z"] * 2 + r[5:] for r in small_focus_rows()[:-1]])
    data = small_org_data()
    data["funders"][0]["awards"] = [{"id": "gc-2022", "amount": "4000.00", "currency": "USD", "from": "2022-01",
                                     "until": "2022-12"}]
    path = tmp_path / "org.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return tmp_path, path


def billing(world, *args):
    tmp, org_path = world
    command, *rest = args
    return main([command, "--org", str(org_path), "--out", str(tmp / "out"), *rest])


def read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_grants_adjust_and_a_simulation_of_the_current_plans_equal_to_the_ledger(world, capsys):
    tmp, _ = world
    assert billing(world, "adjust", "--party", "community:alpha", "--month", "2022-02", "--description",
                   "Onboarding and setup", "--amount", "500") == 0
    assert billing(world, "backfill", "--from", "2022-01", "--to", "2022-03", "--issue-date", "closing-day",
                   "--workers", "1", "--no-notify") == 0
    feb = {r["bill_to"]: r for r in read(tmp / "out" / "2022-02" / "invoices.csv")}
    assert feb["alpha"]["fees"] == "2000.00"          # the tier fee, the uplift, and the setup fee
    assert billing(world, "adjust", "--party", "community:alpha", "--month", "2022-02", "--description", "late",
                   "--amount", "5") == 2
    assert "2022-02 is already finalized for community alpha" in capsys.readouterr().err

    assert billing(world, "grants") == 0
    out = capsys.readouterr().out
    assert "warning: award gc-2022 of grant is 100.0% drawn in 2022-03" in out or "is used up in 2022-03" in out
    rows = read(tmp / "out" / "grants.csv")
    assert [(r["month"], r["drawn"], r["cumulative"], r["remaining"]) for r in rows[:3]] == [
        ("2022-01", "1555.25", "1555.25", "2444.75"), ("2022-02", "1555.25", "3110.50", "889.50"),
        ("2022-03", "889.50", "4000.00", "0.00")]

    assert billing(world, "simulate", "--from", "2022-01", "--to", "2022-03") == 0
    simulation = read(tmp / "out" / "simulation.csv")
    assert len(simulation) == 6 and {r["difference"] for r in simulation} == {"0.00"}
    assert (tmp / "out" / "simulation.png").read_bytes()[:4] == b"\x89PNG"
    # a proposal: alpha on the grant plan would cost the grant its award sooner
    assert billing(world, "simulate", "--from", "2022-01", "--to", "2022-03", "--plan", "alpha-2022",
                   "--community", "beta") == 0
    proposed = {(r["month"], r["community"]): r for r in read(tmp / "out" / "simulation.csv")}
    assert D(proposed[("2022-01", "beta")]["difference"]) == D("0.00")      # same charges, only who pays differs
    # written to a folder of its own, it reads the runs' ledger; without one there, it says which to give
    capsys.readouterr()
    assert billing(world, "simulate", "--from", "2022-01", "--to", "2022-03", "--out", str(tmp / "what-if")) == 2
    assert "--ledger sqlite:///out/ledger.db" in capsys.readouterr().err and not (tmp / "what-if").exists()
    assert billing(world, "simulate", "--from", "2022-01", "--to", "2022-03", "--out", str(tmp / "what-if"),
                   "--ledger", f"sqlite:///{tmp / 'out' / 'ledger.db'}") == 0
    assert {r["difference"] for r in read(tmp / "what-if" / "simulation.csv")} == {"0.00"}


def test_a_simulated_total_counts_what_a_prepaid_balance_paid():
    """A draw on a prepaid balance pays the community's charges; its total is still all of them."""
    import datetime as dt

    from billing.ledger import Invoice, Line
    from billing.simulation import _totals
    from pricing_models.base import SECTIONS

    lines = tuple(Line(SECTIONS[k], k, k, D(a), D(a)) for k, a in [("fee", "100.00"), ("prepaid", "-100.00")])
    doc = Invoice("community", "alpha", "2022-01", "USD", dt.date(2022, 2, 6), dt.date(2022, 3, 8), lines,
                  {"display_name": "alpha"}, {}, "fp", status="finalized", number="ST-1")
    assert dict(_totals([doc], set())) == {("2022-01", "alpha", "USD"): D("100.00")}
