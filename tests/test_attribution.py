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


def group(sub, cost, tag=None, category="Usage", service="EC2", scat="Compute", corrects=None):
    return CostGroup("aws", "999900000000", sub, (tag,), category, service, scat, "USD", D(cost), 1, corrects)


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
corrected = st.sampled_from([None, None, "2021-12", "2022-01"])


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(subs, tags, costs, categories, corrected), min_size=1, max_size=25),
       rule=st.sampled_from(["usage", "even", "direct_cost"]),
       usage=st.dictionaries(st.sampled_from(["alpha-shared", "beta-shared"]),
                             st.decimals(min_value=D(0), max_value=D(1000), places=2), max_size=2))
def test_nothing_is_ever_lost(tmp_path_factory, rows, rule, usage):
    data = small_org_data()
    data["clusters"][0]["split"] = {"rule": rule}
    org = parse_organization(data, "o.yaml", tmp_path_factory.getbasetemp())
    groups = ingested(*[CostGroup("aws", "999900000000", s, (t,), c, "EC2", "Compute", "USD", cost, 1, m)
                        for s, t, cost, c, m in rows])
    result = attribute(org, groups, MonthUsage("m", by_hub=usage), {"2021-12": MonthUsage("m", by_hub=usage)})
    reconciled = reconcile(groups, result)  # raises if a single digit went missing
    assert sum(r.input_total for r in reconciled) == sum(cost for _, _, cost, _, _ in rows)
    assert all(a.community is not None or a.allocation == UNATTRIBUTED for a in result)
    for corrects in {m for *_, m in rows}:   # corrections are attributed apart, each in full
        assert (sum((a.cost for a in result if a.corrects == corrects), D(0))
                == sum((cost for _, _, cost, _, m in rows if m == corrects), D(0)))


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


# ---- corrections (FOCUS ChargeClass "Correction") ----------------------------------------------------------------


def test_corrections_are_attributed_apart_from_the_months_own_cost(tmp_path):
    org = small_org(tmp_path)
    data = ingested(
        group("111100000000", "10.00", "alpha"),
        group("111100000000", "-4.00", "alpha", corrects="2021-12"),         # a refund of December, hub alpha
        group("111100000000", "1.00"),                                       # shared overhead
        group("111100000000", "0.03", corrects="2021-12"),                   # shared overhead, December correction
        group("222200000000", "2.00", corrects="2021-11"),                   # dedicated overhead correction
        group("111100000000", "3.00", "ghost", corrects="2021-12"),          # unknown hub: unattributed
    )
    result = attribute(org, data, MonthUsage("m"))
    assert [(a.cost, a.corrects) for a in by(result, hub="alpha-shared", allocation="direct")] == [
        (D("10.00"), None), (D("-4.00"), "2021-12")]
    shared = {(a.hub, a.corrects): (a.cost, a.note) for a in by(result, allocation="shared")}
    assert shared == {
        ("alpha-shared", None): (D("0.50"), "split evenly: 50.00% of shared overhead"),
        ("beta-shared", None): (D("0.50"), "split evenly: 50.00% of shared overhead"),
        ("alpha-shared", "2021-12"): (D("0.02"), "correction to December 2021: split evenly: 50.00% of shared overhead"),
        ("beta-shared", "2021-12"): (D("0.01"), "correction to December 2021: split evenly: 50.00% of shared overhead"),
    }
    assert [(a.community, a.cost, a.corrects) for a in by(result, allocation="cluster")] == [
        ("alpha", D("2.00"), "2021-11")]
    assert [(a.cost, a.corrects) for a in by(result, allocation=UNATTRIBUTED)] == [(D("3.00"), "2021-12")]
    assert reconcile(data, result)[0].difference == 0


def test_a_shared_correction_is_split_by_the_corrected_months_usage_when_known(tmp_path):
    data = small_org_data()
    data["clusters"][0]["split"] = {"rule": "usage"}
    org = parse_organization(data, "o.yaml", tmp_path)
    groups = ingested(group("111100000000", "100.00"), group("111100000000", "10.00", corrects="2021-12"))
    january = MonthUsage("memory requested", by_hub={"alpha-shared": D("3"), "beta-shared": D("1")})
    december = MonthUsage("memory requested", by_hub={"alpha-shared": D("1"), "beta-shared": D("4")})

    def split(result):
        return {(a.hub, a.corrects): (a.cost, a.note) for a in by(result, allocation="shared")}

    known = split(attribute(org, groups, january, {"2021-12": december}))
    assert known[("alpha-shared", None)] == (D("75.00"), "split by memory requested: 75.00% of shared overhead")
    assert known[("alpha-shared", "2021-12")] == (
        D("2.00"), "correction to December 2021: split by memory requested in December 2021: 20.00% of shared overhead")
    assert known[("beta-shared", "2021-12")][0] == D("8.00")
    # Without December's usage (or with none of its rows: the usage files do not reach back), January's is used,
    # and the note says so.
    unknown = split(attribute(org, groups, january))
    assert unknown[("alpha-shared", "2021-12")] == (
        D("7.50"), "correction to December 2021: split by memory requested in January 2022: 75.00% of shared overhead")
    assert split(attribute(org, groups, january, {"2021-12": MonthUsage("memory requested")})) == unknown


def test_corrections_do_not_count_as_a_hubs_own_cost_for_the_direct_cost_rule(tmp_path):
    data = small_org_data()
    data["clusters"][0]["split"] = {"rule": "direct_cost"}
    org = parse_organization(data, "o.yaml", tmp_path)
    groups = ingested(group("111100000000", "30.00", "alpha"), group("111100000000", "10.00", "beta"),
                      group("111100000000", "500.00", "beta", corrects="2021-12"),
                      group("111100000000", "100.00"), group("111100000000", "-8.00", corrects="2021-12"))
    result = attribute(org, groups, MonthUsage("m"))
    shared = {(a.hub, a.corrects): a.cost for a in by(result, allocation="shared")}
    assert shared == {("alpha-shared", None): D("75.00"), ("beta-shared", None): D("25.00"),
                      ("alpha-shared", "2021-12"): D("-6.00"), ("beta-shared", "2021-12"): D("-2.00")}
    note = next(a.note for a in by(result, allocation="shared", corrects="2021-12"))
    assert note == ("correction to December 2021: split by each hub's own cloud cost in January 2022: "
                    "75.00% of shared overhead")


def test_a_correction_is_split_among_the_hubs_active_in_the_month_it_corrects(tmp_path):
    data = small_org_data()
    data["communities"][1]["active_from"] = "2022-01"   # beta joined in January: December is not its to pay
    org = parse_organization(data, "o.yaml", tmp_path)
    result = attribute(org, ingested(group("111100000000", "1.00"), group("111100000000", "0.40", corrects="2021-12")),
                       MonthUsage("m"))
    assert {(a.hub, a.corrects): a.cost for a in by(result, allocation="shared")} == {
        ("alpha-shared", None): D("0.50"), ("beta-shared", None): D("0.50"), ("alpha-shared", "2021-12"): D("0.40")}


def test_attribution_lines_keep_corrections_apart_and_old_evidence_still_loads(tmp_path):
    from billing.evidence import MonthEvidence, evidence_of

    org = small_org(tmp_path)
    data = ingested(group("111100000000", "10.00", "alpha"), group("111100000000", "-4.00", "alpha", corrects="2021-12"))
    evidence = evidence_of(data, attribute(org, data, MonthUsage("m")), [])
    assert [(l.hub, l.cost, l.corrects) for l in evidence.attribution] == [
        ("alpha-shared", D("10.00"), ""), ("alpha-shared", D("-4.00"), "2021-12")]
    assert MonthEvidence.from_json(evidence.to_json()) == evidence
    old = evidence.to_json().replace(',"corrects":""', "").replace(',"corrects":"2021-12"', "")
    assert "corrects" not in old
    assert [l.corrects for l in MonthEvidence.from_json(old).attribution] == ["", ""]
