import dataclasses
from decimal import Decimal as D
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.months import Month
from pricing_models import CloudCost, PricingContext, build_model
from pricing_models.base import SECTIONS, scope_sum
from pricing_models.usage import graduated

TIERS_2026 = [{"up_to": 10, "unit_price": "10.00"}, {"up_to": 100, "unit_price": "5.00"},
              {"up_to": 1000, "unit_price": "2.50"}, {"up_to": 10000, "unit_price": "1.25"},
              {"up_to": None, "unit_price": "0"}]
FEES_2022 = {"education": "1000.00", "research": "1500.00", "partnership": "4166.67"}


def ctx(kind="education", cloud=(), mau=None, dedicated=False, funder=None):
    community = SimpleNamespace(id="c1", name="Community One", kind=kind)
    return PricingContext(Month(2022, 3), community, funder, "USD", tuple(cloud), mau or {}, dedicated)


def apply(plan, context):
    charges = []
    for spec in plan:
        spec = dict(spec)
        charges += build_model(spec.pop("model"), spec).charges(context, tuple(charges))
    return charges


def test_tier_fee_and_dedicated_uplift():
    plan = [{"model": "tier_fee", "fees": FEES_2022}, {"model": "dedicated_uplift", "percent": "50"}]
    assert [c.rounded for c in apply(plan, ctx("research", dedicated=True))] == [D("1500.00"), D("750.00")]
    assert [c.rounded for c in apply(plan, ctx("partnership"))] == [D("4166.67")]


@pytest.mark.parametrize("mau,expected", [(0, D("0")), (10, D("100.00")), (11, D("105.00")), (280, D("1000.00")),
                                          (1000, D("2800.00")), (20000, D("14050.00"))])
def test_graduated_usage_on_mau(mau, expected):
    charges = apply([{"model": "graduated_usage", "tiers": TIERS_2026}], ctx(mau={"h1": mau}))
    assert sum(c.amount for c in charges) == expected


def test_graduated_tiers_split():
    tiers = build_model("graduated_usage", {"tiers": TIERS_2026}).params.tiers
    assert graduated(105, tiers) == [(1, 10, 10, D("10.00")), (11, 100, 90, D("5.00")), (101, 105, 5, D("2.50"))]


def test_cloud_passthrough_markup_cap():
    cloud = [CloudCost("k", "h1", "compute", "direct", D("1000.004")),
             CloudCost("k", None, "core", "cluster", D("200.005"))]
    plan = [{"model": "fixed_fee", "amount": "2500.00"}, {"model": "cloud_passthrough"},
            {"model": "markup", "percent": "10"}, {"model": "cap", "amount": "3500.00", "applies_to": "all"}]
    charges = apply(plan, ctx(cloud=cloud))
    assert [c.kind for c in charges] == ["fee", "cloud", "cloud", "markup", "cap"]
    assert [c.rounded for c in charges] == [D("2500.00"), D("1000.00"), D("200.01"), D("120.00"), D("-320.01")]
    assert sum(c.rounded for c in charges) == D("3500.00")


def test_a_cap_on_the_fees_never_credits_cloud_cost_passed_through():
    """The default: the cap limits what the organization earns (fees and markup), not runaway cloud spend."""
    cloud = [CloudCost("k", "h1", "compute", "direct", D("50000"))]
    plan = [{"model": "fixed_fee", "amount": "2400.00"}, {"model": "cloud_passthrough"},
            {"model": "markup", "percent": "10"}, {"model": "cap", "amount": "3000.00"}]
    charges = apply(plan, ctx(cloud=cloud))
    assert [(c.kind, c.rounded) for c in charges] == [
        ("fee", D("2400.00")), ("cloud", D("50000.00")), ("markup", D("5000.00")), ("cap", D("-4400.00"))]
    assert charges[-1].description == "Monthly cap of $3,000.00 on service fees"
    quiet = apply(plan, ctx(cloud=[CloudCost("k", "h1", "compute", "direct", D("1000"))]))
    assert [c.kind for c in quiet] == ["fee", "cloud", "markup"]     # fees 2,400 + markup 100: under the cap


def test_subsidy_full_and_partial_balance_to_the_cent():
    funder = SimpleNamespace(id="grant", name="Grant", grant=None)
    cloud = [CloudCost("k", "h1", "compute", "direct", D("33.333"))]
    base = [{"model": "tier_fee", "fees": FEES_2022}, {"model": "cloud_passthrough"}]
    full = apply(base + [{"model": "subsidy", "share": "100"}], ctx(cloud=cloud, funder=funder))
    community = [c for c in full if c.bill_to is None]
    assert sum(c.rounded for c in community) == 0
    assert [c.rounded for c in full if c.bill_to == "grant"] == [D("1033.33")]
    part = apply(base + [{"model": "subsidy", "share": "33.3", "applies_to": "cloud"}], ctx(cloud=cloud, funder=funder))
    pay, grant = part[-2], part[-1]
    assert pay.rounded == -grant.rounded == D("-11.10")


def test_subsidy_without_funder_is_an_error():
    with pytest.raises(ValueError, match="no funder"):
        apply([{"model": "fixed_fee", "amount": "1"}, {"model": "subsidy", "share": "100"}], ctx())


def test_every_declared_placeholder_is_filled_in_while_pricing():
    cloud = [CloudCost("k", "h1", "compute", "direct", D("5000"))]
    plan = [{"model": "tier_fee", "fees": FEES_2022, "description": "{{Tier}} {kind}"},
            {"model": "fixed_fee", "amount": "10", "description": "Flat {amount} {currency}"},
            {"model": "graduated_usage", "tiers": TIERS_2026, "description": "Users {first} to {last}"},
            {"model": "dedicated_uplift", "percent": "12.50", "description": "Uplift {percent} % of {base}"},
            {"model": "cloud_passthrough"},
            {"model": "markup", "percent": "10", "description": "Markup {percent} % of {base}"},
            {"model": "discount", "percent": "5", "description": "{discount} off {scope} ({base})"},
            {"model": "cap", "amount": "1000", "description": "Cap {amount} {currency}"}]
    described = [c.description for c in apply(plan, ctx(cloud=cloud, mau={"h1": 12}, dedicated=True))]
    assert described == ["{Tier} Education", "Flat $10.00 USD", "Users 1 to 10", "Users 11 to 12",
                         "Uplift 12.5 % of $1,120.00", "Compute, hub h1", "Markup 10 % of $5,000.00",
                         "5% off all charges ($6,760.00)", "Cap $1,000.00 USD"]


# ---- discounts ------------------------------------------------------------------------

def steps(plan, context):
    """Apply a plan model by model: (spec, charges before it, its charges)."""
    charges, out = [], []
    for spec in plan:
        params = {k: v for k, v in spec.items() if k != "model"}
        new = build_model(spec["model"], params).charges(context, tuple(charges))
        out.append((spec, tuple(charges), new))
        charges += new
    return out


def test_discount_percent_off_fees_is_its_own_adjustment_line():
    plan = [{"model": "tier_fee", "fees": FEES_2022}, {"model": "dedicated_uplift", "percent": "50"},
            {"model": "discount", "percent": "10", "applies_to": "fees"}]
    *_, discount = apply(plan, ctx("research", dedicated=True))
    assert (discount.kind, discount.description, discount.rounded) == (
        "discount", "Discount: 10% off service fees of $2,250.00", D("-225.00"))
    assert (discount.quantity, discount.unit) == (D("10"), "%")
    assert SECTIONS["discount"] == "Adjustments"
    assert dict(discount.details) == {"applies_to": "fees", "base": "2250.00", "discount": "10%"}


def test_discount_amount_is_limited_to_what_it_applies_to():
    cloud = [CloudCost("k", "h1", "compute", "direct", D("40.004"))]
    plan = [{"model": "fixed_fee", "amount": "1000"}, {"model": "cloud_passthrough"},
            {"model": "discount", "amount": "100.00", "applies_to": "cloud", "description": "Credit {discount}"}]
    *_, discount = apply(plan, ctx(cloud=cloud))
    assert (discount.description, discount.amount, discount.quantity) == ("Credit $100.00", D("-40.00"), None)
    assert dict(discount.details)["limited_to"] == "40.00"


def test_a_monthly_credit_never_exceeds_the_bill():
    plan = [{"model": "fixed_fee", "amount": "250.00"}, {"model": "discount", "amount": "1000"}]
    charges = apply(plan, ctx())
    assert [c.rounded for c in charges] == [D("250.00"), D("-250.00")]
    assert charges[-1].description == "Discount: $1,000.00 off all charges of $250.00"


@pytest.mark.parametrize("plan", [
    # nothing in scope yet: the discount comes before the cloud costs
    [{"model": "fixed_fee", "amount": "100"}, {"model": "discount", "percent": "50", "applies_to": "cloud"},
     {"model": "cloud_passthrough"}],
    # the fees are already fully discounted
    [{"model": "fixed_fee", "amount": "100"}, {"model": "discount", "percent": "100", "applies_to": "fees"},
     {"model": "discount", "amount": "5", "applies_to": "fees"}],
    # the bill is already zero (a whole-bill discount), though fees remain in scope
    [{"model": "fixed_fee", "amount": "100"}, {"model": "discount", "percent": "100"},
     {"model": "discount", "percent": "100", "applies_to": "fees"}],
])
def test_a_discount_with_nothing_left_to_discount_makes_no_line(plan):
    charges = apply(plan, ctx(cloud=[CloudCost("k", "h1", "compute", "direct", D("10"))]))
    assert sum(c.rounded for c in charges) >= 0
    assert [c.kind for c in charges].count("discount") == sum(s["model"] == "discount" for s in plan) - 1


def test_discount_on_net_negative_cloud_costs_makes_no_line():
    cloud = [CloudCost("k", "h1", "compute", "direct", D("10")), CloudCost("k", None, "credit", "cluster", D("-25"))]
    plan = [{"model": "fixed_fee", "amount": "100"}, {"model": "cloud_passthrough"},
            {"model": "discount", "percent": "50", "applies_to": "cloud"}]
    assert "discount" not in [c.kind for c in apply(plan, ctx(cloud=cloud))]


def test_a_subsidy_after_a_discount_pays_the_discounted_fees():
    funder = SimpleNamespace(id="grant", name="Grant", grant=None)
    plan = [{"model": "fixed_fee", "amount": "1000"}, {"model": "discount", "percent": "25", "applies_to": "fees"},
            {"model": "subsidy", "share": "100", "applies_to": "fees"}]
    charges = apply(plan, ctx(funder=funder))
    assert sum(c.rounded for c in charges if c.bill_to is None) == 0
    assert [c.rounded for c in charges if c.bill_to == "grant"] == [D("750.00")]


def test_percent_discount_rounds_within_its_base():
    plan = [{"model": "fixed_fee", "amount": "0.01"}, {"model": "discount", "percent": "50"}]
    assert [c.rounded for c in apply(plan, ctx())] == [D("0.01"), D("-0.01")]   # half-up, still within the base
    plan = [{"model": "fixed_fee", "amount": "1000.01"}, {"model": "discount", "percent": "33.3"}]
    assert apply(plan, ctx())[-1].rounded == D("-333.00")


money = st.decimals(min_value=0, max_value=20000, places=2).map(str)
cloud_amounts = st.lists(st.decimals(min_value=-2000, max_value=8000, places=4), max_size=4)
percent_off = st.decimals(min_value="0.01", max_value=100, places=2).map(lambda p: {"percent": str(p)})
amount_off = st.decimals(min_value="0.01", max_value=30000, places=3).map(lambda a: {"amount": str(a)})
discounts = st.lists(st.tuples(st.sampled_from(["all", "fees", "cloud"]), st.one_of(percent_off, amount_off)).map(
    lambda t: {"model": "discount", "applies_to": t[0], **t[1]}), min_size=1, max_size=4)
others = st.tuples(money, st.decimals(min_value=0, max_value=1000, places=1).map(str),
                   st.one_of(st.none(), money),
                   st.one_of(st.none(), st.tuples(st.decimals(min_value="0.1", max_value=100, places=1),
                                                  st.sampled_from(["all", "fees", "cloud"])))).map(
    lambda t: [{"model": "fixed_fee", "amount": t[0]}, {"model": "cloud_passthrough"},
               {"model": "markup", "percent": t[1]}]
    + ([{"model": "cap", "amount": t[2]}] if t[2] else [])
    + ([{"model": "subsidy", "share": str(t[3][0]), "applies_to": t[3][1]}] if t[3] else []))


@settings(max_examples=300, deadline=None)
@given(others, discounts, cloud_amounts, st.randoms(use_true_random=False))
def test_discounts_never_take_the_bill_or_their_base_below_zero(other_models, discount_models, cloud, rnd):
    plan = other_models + discount_models
    rnd.shuffle(plan)
    costs = [CloudCost("k", "h1", "compute", "direct", D(a)) for a in cloud]
    context = ctx(cloud=costs, funder=SimpleNamespace(id="grant", name="Grant", grant=None))
    applied = steps(plan, context)
    for spec, before, new in applied:
        if spec["model"] != "discount":
            continue
        bill = sum((c.rounded for c in before if c.bill_to is None), D(0))
        base = scope_sum(before, spec["applies_to"])
        assert len(new) <= 1 and all(c.amount < 0 and c.kind == "discount" for c in new)
        if bill <= 0 or base <= 0:
            assert new == []
            continue
        after = before + tuple(new)
        assert sum((c.rounded for c in after if c.bill_to is None), D(0)) >= 0
        assert scope_sum(after, spec["applies_to"]) >= 0
        if new:
            wanted = D(spec["amount"]) if "amount" in spec else base * D(spec["percent"]) / 100
            assert -new[0].amount <= wanted


@settings(max_examples=300, deadline=None)
@given(others, discounts, st.lists(st.decimals(min_value=0, max_value=8000, places=4), max_size=3),
       st.randoms(use_true_random=False))
def test_without_cloud_credits_no_plan_gives_a_negative_invoice(other_models, discount_models, cloud, rnd):
    plan = other_models + discount_models
    rnd.shuffle(plan)
    costs = [CloudCost("k", "h1", "compute", "direct", D(a)) for a in cloud]
    charges = apply(plan, ctx(cloud=costs, funder=SimpleNamespace(id="grant", name="Grant", grant=None)))
    assert sum(c.rounded for c in charges if c.bill_to is None) >= 0


@pytest.mark.parametrize("reduction", [{"model": "discount", "percent": "50"}, {"model": "cap", "amount": "40"}])
def test_a_subsidy_never_pays_more_than_the_community_owes(reduction):
    funder = SimpleNamespace(id="grant", name="Grant", grant="G-1")
    plan = [{"model": "fixed_fee", "amount": "100"}, reduction,
            {"model": "subsidy", "share": "100", "applies_to": "fees"}]
    *_, pays, grant = apply(plan, ctx(funder=funder))
    assert pays.rounded == -grant.rounded == -sum(c.rounded for c in apply(plan[:2], ctx()))
    assert pays.description == "Paid by Grant (G-1): 100% of service fees, limited to the balance so far"
    assert dict(grant.details)["limited_to"] == str(grant.rounded)


def test_no_subsidy_when_the_community_owes_nothing():
    funder = SimpleNamespace(id="grant", name="Grant", grant=None)
    cloud = [CloudCost("k", None, "credit", "cluster", D("-1200"))]
    plan = [{"model": "fixed_fee", "amount": "1000"}, {"model": "cloud_passthrough"},
            {"model": "subsidy", "share": "100", "applies_to": "fees"}]
    assert [c.kind for c in apply(plan, ctx(cloud=cloud, funder=funder))] == ["fee", "cloud"]


# ---- corrections ----------------------------------------------------------------------


def test_a_correction_is_a_cloud_line_of_its_own_and_the_markup_covers_it():
    cloud = [CloudCost("k", "h1", "compute", "direct", D("100.00")),
             CloudCost("k", "h1", "compute", "direct", D("-30.00"), corrects="2022-05"),
             CloudCost("k", "h2", "storage", "shared", D("1.25"), "split evenly: 50.00% of k overhead", "2022-05"),
             CloudCost("k", None, "core", "cluster", D("0"), corrects="2022-04")]     # nothing to show
    charges = apply([{"model": "cloud_passthrough"}, {"model": "markup", "percent": "10"}], ctx(cloud=cloud))
    assert [(c.kind, c.description, c.rounded) for c in charges[:3]] == [
        ("cloud", "Compute, hub h1", D("100.00")),
        ("cloud", "Correction to May 2022 charges: Compute, hub h1", D("-30.00")),
        ("cloud", "Correction to May 2022 charges: Storage, hub h2: share of shared cluster k", D("1.25"))]
    assert dict(charges[1].details) == {"allocation": "direct", "corrects": "2022-05"}
    assert dict(charges[2].details) == {"allocation": "shared", "split": "split evenly: 50.00% of k overhead",
                                        "corrects": "2022-05"}
    assert (charges[1].hub, charges[1].cluster, charges[1].component) == ("h1", "k", "compute")
    markup = charges[-1]
    assert (markup.kind, markup.rounded, dict(markup.details)["base"]) == ("markup", D("7.13"), "71.25")


# ---- wording ---------------------------------------------------------------------------


def test_default_descriptions_print_money_as_documents_do_and_percentages_say_their_base():
    cloud = [CloudCost("k", "h1", "compute", "direct", D("2000.00")),
             CloudCost("k", "h1", "tax", "direct", D("145.00")),
             CloudCost("k", None, "tax", "cluster", D("12.34")),
             CloudCost("k", "h2", "tax", "shared", D("0.66"), "split evenly: 50.00% of k overhead"),
             CloudCost("k", None, "credit", "cluster", D("-12.33")),
             CloudCost("k", "h1", "tax", "direct", D("-1.00"), corrects="2022-01")]
    plan = [{"model": "tier_fee", "fees": FEES_2022}, {"model": "fixed_fee", "amount": "1250"},
            {"model": "graduated_usage", "tiers": TIERS_2026}, {"model": "dedicated_uplift", "percent": "50"},
            {"model": "cloud_passthrough"}, {"model": "markup", "percent": "12.5"},
            {"model": "discount", "percent": "10", "applies_to": "fees"},
            {"model": "discount", "amount": "100", "applies_to": "cloud"},
            {"model": "cap", "amount": "3000", "applies_to": "all"}]
    charges = apply(plan, ctx("research", cloud=cloud, mau={"h1": 1200}, dedicated=True))
    assert [c.description for c in charges] == [
        "Monthly service fee (Research tier)",
        "Monthly service fee",
        "Monthly active users 1–10", "Monthly active users 11–100", "Monthly active users 101–1,000",
        "Monthly active users 1,001–1,200",
        "Dedicated cluster: +50% on service fees of $5,800.00",
        "Compute, hub h1",
        "Sales tax charged by the cloud provider, hub h1",
        "Sales tax charged by the cloud provider, cluster k overhead",
        "Sales tax charged by the cloud provider, hub h2: share of shared cluster k",
        "Credits from the cloud provider, cluster k overhead",
        "Correction to January 2022 charges: Sales tax charged by the cloud provider, hub h1",
        "Markup: 12.5% of cloud costs of $2,144.67",
        "Discount: 10% off service fees of $8,700.00",
        "Discount: $100.00 off cloud costs of $2,412.75",
        "Monthly cap of $3,000.00 on all charges",
    ]
    # Only descriptions changed: quantity, unit and unit price of the percentage lines are as before.
    uplift, markup, discount = (next(c for c in charges if c.kind == k) for k in ("uplift", "markup", "discount"))
    assert [(c.quantity, c.unit, c.unit_price) for c in (uplift, markup, discount)] == [
        (D("50"), "%", None), (D("12.5"), "%", None), (D("10"), "%", None)]


@pytest.mark.parametrize("currency,amount,shown", [("EUR", "1234.5", "€1,234.50"), ("JPY", "1200", "¥1,200"),
                                                    ("CHF", "3000", "CHF3,000.00")])
def test_amounts_in_descriptions_use_the_invoices_currency(currency, amount, shown):
    context = dataclasses.replace(ctx(cloud=[CloudCost("k", "h1", "compute", "direct", D("99999"))]), currency=currency)
    charges = apply([{"model": "cloud_passthrough"}, {"model": "cap", "amount": amount, "applies_to": "all"}], context)
    assert charges[-1].description == f"Monthly cap of {shown} on all charges"
