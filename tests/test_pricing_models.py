from decimal import Decimal as D
from types import SimpleNamespace

import pytest

from billing.months import Month
from pricing_models import CloudCost, PricingContext, build_model
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
            {"model": "markup", "percent": "10"}, {"model": "cap", "amount": "3500.00"}]
    charges = apply(plan, ctx(cloud=cloud))
    assert [c.kind for c in charges] == ["fee", "cloud", "cloud", "markup", "cap"]
    assert [c.rounded for c in charges] == [D("2500.00"), D("1000.00"), D("200.01"), D("120.00"), D("-320.01")]
    assert sum(c.rounded for c in charges) == D("3500.00")


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
            {"model": "dedicated_uplift", "percent": "12.50", "description": "Uplift {percent} %"},
            {"model": "cloud_passthrough"},
            {"model": "markup", "percent": "10", "description": "Markup {percent} %"},
            {"model": "cap", "amount": "1000", "description": "Cap {amount} {currency}"}]
    described = [c.description for c in apply(plan, ctx(cloud=cloud, mau={"h1": 12}, dedicated=True))]
    assert described == ["{Tier} Education", "Flat 10 USD", "Users 1 to 10", "Users 11 to 12", "Uplift 12.5 %",
                         "Compute, hub h1", "Markup 10 %", "Cap 1000 USD"]
