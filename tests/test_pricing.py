"""billing.pricing: plans applied per community, currencies."""
from decimal import Decimal as D

import pytest

from billing.attribution import AttributedCost
from billing.config import parse_organization
from billing.errors import InputError
from billing.months import Month
from billing.pricing import price_month
from billing.usage import MonthUsage
from helpers import small_org_data

JAN = Month(2022, 1)


def euro_org(tmp_path, rates=()):
    data = small_org_data()
    data["communities"][0]["currency"] = "EUR"
    plan = dict(data["pricing_plans"][0], id="alpha-eur", currency="EUR")
    data["pricing_plans"].append(plan)
    data["communities"][0]["pricing_plan"] = "alpha-eur"
    data["exchange_rates"] = list(rates)
    return parse_organization(data, "o.yaml", tmp_path)


def usd_cost(amount):
    return AttributedCost("aws", "999900000000", "alpha-dedicated", "alpha-prod", "alpha", "compute", "direct", "USD",
                          D(amount))


def test_cost_in_another_currency_needs_a_rate(tmp_path):
    with pytest.raises(InputError, match=r"community 'alpha' is invoiced in EUR but has USD cloud cost in 2022-01"):
        price_month(euro_org(tmp_path), JAN, [usd_cost("100.00")], MonthUsage("m"))


def test_configured_rate_converts_exactly(tmp_path):
    org = euro_org(tmp_path, [{"month": "2022-01", "from": "USD", "to": "EUR", "rate": "0.8812"}])
    charges = price_month(org, JAN, [usd_cost("100.005")], MonthUsage("m"))["alpha"]
    cloud = [c for c in charges if c.kind == "cloud"]
    assert cloud[0].amount == D("88.124406") and cloud[0].rounded == D("88.12") and cloud[0].currency == "EUR"


def test_inactive_communities_are_not_invoiced(tmp_path):
    data = small_org_data()
    data["communities"][1]["active_from"] = "2022-02"
    org = parse_organization(data, "o.yaml", tmp_path)
    assert list(price_month(org, JAN, [], MonthUsage("m"))) == ["alpha"]
