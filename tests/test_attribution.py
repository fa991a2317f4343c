from decimal import Decimal as D

import pytest

from billing.attribution import UNATTRIBUTED, attribute, component_of, reconcile
from billing.errors import ReconciliationError
from billing.ingest import CostGroup, IngestedMonth
from billing.months import Month
from billing.usage import MonthUsage
from helpers import small_org, small_org_data
from billing.config import parse_organization

JAN = Month(2022, 1)


def group(sub, cost, tag=None, category="Usage", service="EC2", scat="Compute"):
    return CostGroup("aws", "999900000000", sub, (tag,), category, service, scat, "USD", D(cost), 1)


def ingested(*groups):
    return IngestedMonth(JAN, ("2i2c:hub-name",), tuple(groups), ())


def by(result, **match):
    return [a for a in result if all(getattr(a, k) == v for k, v in match.items())]


def test_components():
    assert component_of(group("x", "1", category="Tax")) == "tax"
    assert component_of(group("x", "1", category="Credit")) == "credit"
    assert component_of(group("x", "1", service="Amazon Elastic Kubernetes Service")) == "core"
    assert component_of(group("x", "1", scat="Storage")) == "storage"
    assert component_of(group("x", "1", scat="Databases")) == "other"


def test_rules(tmp_path):
    org = small_org(tmp_path)
    data = ingested(
        group("111100000000", "10.00", "alpha"),
        group("111100000000", "3.00", "ghost"),             # unknown hub on a shared cluster
        group("111100000000", "1.00"),                       # shared overhead
        group("111100000000", "0.01", "kube-system"),        # a system namespace is overhead too
        group("222200000000", "7.00", "staging"),            # unknown hub on a dedicated cluster
        group("222200000000", "2.00"),                       # dedicated overhead
        group("444400000000", "5.00", "alpha"),              # sub-account no cluster claims
    )
    result = attribute(org, data, MonthUsage("m"))
    assert by(result, hub="alpha-shared", allocation="direct")[0].cost == D("10.00")
    assert by(result, allocation=UNATTRIBUTED, cluster="shared")[0].cost == D("3.00")
    assert sorted(a.cost for a in by(result, allocation="shared")) == [D("0.50"), D("0.51")]
    assert {a.community for a in by(result, cluster="alpha-dedicated")} == {"alpha"}
    assert by(result, allocation=UNATTRIBUTED, cluster=None)[0].cost == D("5.00")
    rows = reconcile(data, result)
    assert rows[0].input_total == D("28.01") and rows[0].unattributed == D("8.00") and rows[0].difference == 0


@pytest.mark.parametrize("rule,usage,expected", [
    ("usage", {"alpha-shared": D("30"), "beta-shared": D("10")}, {"alpha-shared": D("75.00"), "beta-shared": D("25.00")}),
    ("usage", {}, {"alpha-shared": D("50.00"), "beta-shared": D("50.00")}),   # all weights zero: even fallback
    ("direct_cost", {}, {"alpha-shared": D("80.00"), "beta-shared": D("20.00")}),
    ("even", {"alpha-shared": D("30")}, {"alpha-shared": D("50.00"), "beta-shared": D("50.00")}),
])
def test_split_rules(tmp_path, rule, usage, expected):
    data = small_org_data()
    data["clusters"][0]["split"] = {"rule": rule}
    org = parse_organization(data, "o.yaml", tmp_path)
    groups = ingested(group("111100000000", "40.00", "alpha"), group("111100000000", "10.00", "beta"),
                      group("111100000000", "100.00"))
    result = attribute(org, groups, MonthUsage("GiB-hours", by_hub=usage))
    shared = {a.hub: a.cost for a in by(result, allocation="shared")}
    assert shared == expected
    if not usage and rule == "usage":
        assert "fallback" in by(result, allocation="shared")[0].note


def test_reconcile_fails_loudly_when_something_is_lost(tmp_path):
    org = small_org(tmp_path)
    data = ingested(group("111100000000", "10.00", "alpha"), group("222200000000", "2.00"))
    result = attribute(org, data, MonthUsage("m"))
    with pytest.raises(ReconciliationError, match="difference 2.00"):
        reconcile(data, result[:1])


from hypothesis import given, settings
from hypothesis import strategies as st

subs = st.sampled_from(["111100000000", "222200000000", "444400000000", None])
tags = st.sampled_from(["alpha", "beta", "prod", "ghost", "kube-system", None])
costs = st.decimals(min_value=D("-500"), max_value=D("5000"), places=10, allow_nan=False)
categories = st.sampled_from(["Usage", "Tax", "Credit", "Adjustment"])


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(subs, tags, costs, categories), min_size=1, max_size=25),
       rule=st.sampled_from(["usage", "even", "direct_cost"]),
       usage=st.dictionaries(st.sampled_from(["alpha-shared", "beta-shared"]),
                             st.decimals(min_value=D(0), max_value=D(1000), places=2), max_size=2))
def test_nothing_is_ever_lost(tmp_path_factory, rows, rule, usage):
    data = small_org_data()
    data["clusters"][0]["split"] = {"rule": rule}
    org = parse_organization(data, "o.yaml", tmp_path_factory.getbasetemp())
    groups = ingested(*[CostGroup("aws", "999900000000", s, (t,), c, "EC2", "Compute", "USD", cost, 1)
                        for s, t, cost, c in rows])
    result = attribute(org, groups, MonthUsage("m", by_hub=usage))
    reconciled = reconcile(groups, result)  # raises if a single digit went missing
    assert sum(r.input_total for r in reconciled) == sum(cost for _, _, cost, _ in rows)
    assert all(a.community is not None or a.allocation == UNATTRIBUTED for a in result)


def test_cost_of_an_inactive_community_is_unattributed_not_lost(tmp_path):
    data = small_org_data()
    data["communities"][0]["active_until"] = "2021-12"   # alpha has left, but its hub still costs money
    org = parse_organization(data, "o.yaml", tmp_path)
    result = attribute(org, ingested(group("222200000000", "7.00", "prod"), group("111100000000", "4.00")),
                       MonthUsage("m"))
    lost = by(result, hub="alpha-prod")[0]
    assert lost.allocation == UNATTRIBUTED and "community 'alpha' is not active in 2022-01" in lost.note
    assert by(result, allocation="shared") == [a for a in result if a.hub == "beta-shared"]  # split among active hubs


def test_sub_accounts_match_whatever_their_case(tmp_path):
    data = small_org_data()
    data["clusters"][0]["sub_accounts"] = ["ABCD-Sub"]
    org = parse_organization(data, "o.yaml", tmp_path)
    assert org.cluster("shared").sub_accounts == ("abcd-sub",)
    result = attribute(org, ingested(group("abcd-sub", "1.00", "alpha")), MonthUsage("m"))
    assert result[0].hub == "alpha-shared"
