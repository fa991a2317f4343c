"""Property: whatever `billing validate` accepts prices and renders; what it refuses, it refuses cleanly.

Random configurations, careless and hostile (negative money, fake
currencies, impossible months, unknown placeholders, format-string tricks,
unprintable names, funders in another currency), go through
`parse_organization` (what `validate` runs). A refusal must be a
`ConfigError`, never another exception. An accepted configuration must run
a draft month end to end (pricing, invoices, every PDF rendered) without
failing; the only failure allowed later is one that depends on the data
itself, reported as a one-line `InputError` (a cost in a currency that has
no exchange rate for the month).
"""
from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from billing.config import parse_organization
from billing.errors import ConfigError, InputError
from billing.months import Month
from billing.pipeline import RunOptions, run_month
from helpers import small_focus_rows, small_org_data, write_focus_csv

# Each list: values validate accepts first, then values it must refuse; `mostly` draws the valid ones more often,
# so that a good share of the configurations pass validation and go on to be priced and rendered.
VALID_TEXT = ["Alpha University", "Ünïcödé Ωmega 数据", "O'Brien & <b>Sons</b> {x}", "=HYPERLINK(\"x\")",
              "tab\there", "line\nbreak", "$$ math $x$", "{{braces}}", "x" * 300, "&amp; &lt;script&gt;",
              "\\ backslash", "مركز البيانات", "\u00a0nbsp"]
INVALID_TEXT = ["a\ud800b", "nul\x00here", "\u202egnp.exe", "", " ", "esc\x1b[31m"]
VALID_CURRENCIES, INVALID_CURRENCIES = ["USD", "EUR", "JPY", "BHD", "CLF"], ["XYZ", "usd", "XXX", "US", "EURO"]
VALID_AMOUNTS = ["0", "1000.00", "1500", "4166.67", "0.001", "12345678.901", "999999999999.99", 7]
INVALID_AMOUNTS = ["-5", "-0.01", "abc", "", "1e40", "NaN", "Infinity", 12.5, True, None]
VALID_PERCENTS, INVALID_PERCENTS = ["10", "50", "0", "100", "12.345", "1000"], ["1001", "-90", "abc", 10.5, None]
VALID_TEMPLATES = [None, "Fee", "Fee ({kind})", "{percent}% extra", "{amount} {currency}", "{first}-{last} users",
                   "{{literal}}", "{discount} off {scope}"]
INVALID_TEMPLATES = ["{name}", "{percent.__class__}", "{x[0]}", "{percent!r}", "{percent:>10}", "}{", "{", "\x00"]
VALID_MONTHS, INVALID_MONTHS = [None, "2022-01", "2021-12", "2022-02"], ["2022-13", "0000-01", "2022-1", "22-01",
                                                                          "9999-12", "2022-00"]


def mostly(valid: list, invalid: list):
    """Valid values a dozen times out of thirteen: a configuration has many fields, and both outcomes must occur."""
    # (one_of would merge twelve equal branches into one: weight by repeating the values instead)
    return st.sampled_from(valid * (12 * len(invalid)) + invalid * len(valid))


TEXT = mostly(VALID_TEXT, INVALID_TEXT)
CURRENCY = mostly(["USD"] * 8 + VALID_CURRENCIES, INVALID_CURRENCIES)
AMOUNT = mostly(VALID_AMOUNTS, INVALID_AMOUNTS)
PERCENT = mostly(VALID_PERCENTS, INVALID_PERCENTS)
TEMPLATE = mostly(VALID_TEMPLATES, INVALID_TEMPLATES)
MONTH = mostly([None] * 8 + VALID_MONTHS, INVALID_MONTHS)


def maybe(strategy):
    return st.one_of(st.none(), strategy)


def with_description(params: dict, template) -> dict:
    return params if template is None else {**params, "description": template}


@st.composite
def charge_specs(draw):
    model = draw(st.sampled_from(["tier_fee", "fixed_fee", "dedicated_uplift", "graduated_usage", "markup", "cap",
                                  "discount", "subsidy", "cloud_passthrough"] * 3 + ["no_such_model", "os:system"]))
    template = draw(TEMPLATE)
    if model == "tier_fee":
        fees = {k: draw(AMOUNT) for k in draw(st.sets(
            st.sampled_from(["education", "research", "partnership"] * 5 + ["enterprise"]), min_size=1))}
        return with_description({"model": model, "fees": fees}, template)
    if model in ("fixed_fee", "cap"):
        return with_description({"model": model, "amount": draw(AMOUNT)}, template)
    if model in ("dedicated_uplift", "markup"):
        return with_description({"model": model, "percent": draw(PERCENT)}, template)
    if model == "graduated_usage":
        bounds = sorted(draw(st.lists(st.integers(1, 2000), max_size=3, unique=True))) + [None]
        if draw(st.integers(0, 4)) == 0:
            bounds = draw(st.lists(st.one_of(st.integers(-5, 2000), st.none()), min_size=1, max_size=4))
        tiers = [{"up_to": b, "unit_price": draw(AMOUNT)} for b in bounds]
        return with_description({"model": model, "tiers": tiers}, template)
    if model == "discount":
        spec = {"model": model, "applies_to": draw(mostly(["all", "fees", "cloud"], ["everything"]))}
        spec.update(draw(st.one_of(PERCENT.map(lambda p: {"percent": p}), AMOUNT.map(lambda a: {"amount": a}),
                                   st.just({}))))
        return with_description(spec, template)
    if model == "subsidy":
        return {"model": model, "share": draw(PERCENT),
                "applies_to": draw(st.sampled_from(["all", "fees", "cloud"]))}
    return {"model": model}


@st.composite
def organizations(draw):
    data = small_org_data()
    currency = draw(CURRENCY)      # the organization's; each party deviates from it now and then

    def party_currency() -> str:
        return draw(mostly([currency], [c for c in VALID_CURRENCIES + INVALID_CURRENCIES if c != currency]))

    for plan in data["pricing_plans"]:
        plan["currency"] = party_currency()
        if draw(st.booleans()):
            plan["charges"] = draw(st.lists(charge_specs(), min_size=1, max_size=5))
    for community in data["communities"]:
        community["name"] = draw(TEXT)
        community["currency"] = party_currency()
        community["billing_contact"] = {**community["billing_contact"],
                                        "name": draw(TEXT)}
        for key in ("active_from", "active_until"):
            if (month := draw(MONTH)) is not None:
                community[key] = month
    funder = data["funders"][0]
    funder["currency"] = party_currency()
    funder["name"] = draw(TEXT)
    funder["grant"] = draw(maybe(TEXT))
    data["issuer"]["name"] = draw(TEXT)
    data["issuer"]["payment_instructions"] = draw(st.lists(TEXT, max_size=2))
    data["issuer"]["invoice_prefix"] = draw(mostly(["TST", "INV", "OHC-EU"], ["2022", "a-b", "", "X--Y"]))
    data["issuer"]["payment_terms_days"] = draw(mostly([0, 30, 365], [366, -1, "yes", 30.5]))
    if draw(st.booleans()):
        data["exchange_rates"] = [{"month": draw(mostly(["2022-01", "2022-02"], INVALID_MONTHS)),
                                   "from": "USD" if currency != "USD" else draw(mostly(["EUR"], ["USD"])),
                                   "to": currency,
                                   "rate": draw(mostly(["0.9", "1.1", "150.25"], ["0", "-1", "1e12", 0.9, "abc"]))}
                                  for _ in range(draw(st.integers(1, 3)))]
    return data


@pytest.fixture(scope="module")
def focus_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("property")
    write_focus_csv(folder / "focus" / "2022-01.csv", small_focus_rows())
    return folder


@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=organizations())
def test_what_validate_accepts_prices_and_renders(data, focus_dir, tmp_path_factory):
    try:
        org = parse_organization(data, "random-org.yaml", focus_dir)
    except ConfigError as err:
        assert "random-org.yaml" in str(err)
        event("refused by validate")
        return
    event("accepted by validate")
    out = tmp_path_factory.mktemp("out")
    try:
        run_month(org, Month(2022, 1), RunOptions(out_dir=out, draft=True, workers=1))
    except InputError as err:  # depends on the data, not the configuration alone
        assert "exchange_rates" in str(err), err
        event("data needs an exchange rate")
        return
    pdfs = list((out / "2022-01" / "invoices").glob("DRAFT-*.pdf"))
    assert pdfs and all(p.stat().st_size > 1000 for p in pdfs)


def test_the_property_sees_both_outcomes():
    """Guard against a strategy that only ever produces invalid (or only valid) configurations."""
    from hypothesis import find

    def valid(data) -> bool:
        try:
            parse_organization(data, "x.yaml")
            return True
        except ConfigError:
            return False

    assert valid(find(organizations(), valid, settings=settings(max_examples=500, database=None)))
    assert not valid(find(organizations(), lambda d: not valid(d), settings=settings(max_examples=50, database=None)))


def test_printable_ascii_in_templates_never_escapes_validation():
    """Any description made of printable characters is either accepted and fills in, or refused by validate."""
    from pricing_models import validate_plan
    from billing.config import PricingPlan

    for text in ["{", "}", "{}", "{0}", "{kind", "kind}", "{{kind}}", "{kind}{kind}", "{ kind }", "%s", "{kind!s}",
                 *[c for c in string.punctuation]]:
        plan = PricingPlan.model_validate({"id": "p", "name": "P", "charges": [
            {"model": "tier_fee", "fees": {"education": "1", "research": "1", "partnership": "1"},
             "description": text}]})
        problems = validate_plan(plan)
        if not problems:
            from pricing_models import build_model
            build_model("tier_fee", plan.charges[0].params).describe(kind="Education")
