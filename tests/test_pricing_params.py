"""Parameters of the built-in pricing models: every amount and percentage has a stated range."""
from decimal import Decimal as D
from pathlib import Path
from types import SimpleNamespace

import pytest

from pricing_models import build_model, known_models, model_class, validate_plan
from pricing_models.base import MAX_AMOUNT, Range, parameter_ranges


def problems(model: str, **params) -> list[str]:
    plan = SimpleNamespace(charges=[SimpleNamespace(model=model, params=params)])
    return validate_plan(plan)


def one_problem(model: str, **params) -> str:
    found = problems(model, **params)
    assert len(found) == 1, found
    return found[0]


TIERS = [{"up_to": 10, "unit_price": "10"}, {"up_to": None, "unit_price": "0"}]

# (model, path to the ranged value in error messages, parameters with that value)
RANGED = [
    ("fixed_fee", "amount", lambda v: {"amount": v}),
    ("tier_fee", "fees.research", lambda v: {"fees": {"education": "1", "research": v}}),
    ("dedicated_uplift", "percent", lambda v: {"percent": v}),
    ("graduated_usage", "tiers.1.unit_price",
     lambda v: {"tiers": [TIERS[0], {"up_to": None, "unit_price": v}]}),
    ("markup", "percent", lambda v: {"percent": v}),
    ("cap", "amount", lambda v: {"amount": v}),
    ("subsidy", "share", lambda v: {"share": v}),
]


def test_the_range_types_say_what_they_accept():
    assert str(Range(D(0), D(1000))) == "from 0 to 1,000"
    assert str(Range(D(0), D(100), low_open=True)) == "more than 0 and at most 100"
    assert D("0") in Range(D(0), D(1)) and D("0") not in Range(D(0), D(1), low_open=True)
    assert D("1.0000001") not in Range(D(0), D(1))


def test_every_money_and_percentage_parameter_declares_its_range():
    ranges = {name: parameter_ranges(model_class(name).Params) for name, *_ in RANGED}
    assert ranges == {
        "fixed_fee": {"amount": "an amount from 0 to 1,000,000,000,000"},
        "tier_fee": {"fees.*": "an amount from 0 to 1,000,000,000,000"},
        "dedicated_uplift": {"percent": "a percentage from 0 to 1,000"},
        "graduated_usage": {"tiers[].unit_price": "an amount from 0 to 1,000,000,000,000"},
        "markup": {"percent": "a percentage from 0 to 1,000"},
        "cap": {"amount": "an amount from 0 to 1,000,000,000,000"},
        "subsidy": {"share": "a percentage more than 0 and at most 100"},
    }
    assert parameter_ranges(model_class("discount").Params) == {
        "percent": "a percentage more than 0 and at most 100",
        "amount": "an amount more than 0 and at most 1,000,000,000,000"}


def decimals_without_range(node: dict, defs: dict) -> int:
    """How many decimal-typed values in a JSON schema have no upper bound."""
    if "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[-1]]
    branches = node.get("anyOf", [])
    count = int({"type": "number"} in branches and {"type": "string"} in branches and "le" not in node)
    children = [*node.get("properties", {}).values(), *branches]
    children += [node[k] for k in ("items", "additionalProperties") if isinstance(node.get(k), dict)]
    return count + sum(decimals_without_range(c, defs) for c in children)


@pytest.mark.parametrize("model", known_models())
def test_no_built_in_model_has_a_decimal_parameter_without_a_range(model):
    schema = model_class(model).Params.model_json_schema()
    assert decimals_without_range(schema, schema.get("$defs", {})) == 0


def test_ranges_are_in_the_json_schema():
    schema = model_class("markup").Params.model_json_schema()["properties"]["percent"]
    assert (schema["ge"], schema["le"]) == ("0", "1000")
    schema = model_class("subsidy").Params.model_json_schema()["properties"]["share"]
    assert (schema["gt"], schema["le"]) == ("0", "100")


@pytest.mark.parametrize("model,path,put", RANGED, ids=[r[0] for r in RANGED])
def test_negative_values_are_refused_with_the_range(model, path, put):
    message = one_problem(model, **put("-1"))
    assert message.startswith(f"charges[0] ({model}).{path}: must be ")
    assert message.endswith("(got '-1')")
    assert " from 0 to " in message or " more than 0 and at most " in message


@pytest.mark.parametrize("model", ["fixed_fee", "tier_fee", "graduated_usage", "cap", "markup", "dedicated_uplift"])
def test_a_negative_fee_points_to_the_discount_model(model):
    _, _, put = next(r for r in RANGED if r[0] == model)
    assert "a credit or discount is its own model (`discount`)" in one_problem(model, **put("-100.00"))


@pytest.mark.parametrize("model,path,put", RANGED, ids=[r[0] for r in RANGED])
def test_too_large_values_are_refused(model, path, put):
    too_large = {"subsidy": "100.01", "markup": "1000.5", "dedicated_uplift": "1001"}.get(model, str(MAX_AMOUNT + 1))
    message = one_problem(model, **put(too_large))
    assert f"({model}).{path}: must be " in message and "credit or discount" not in message


@pytest.mark.parametrize("model,path,put", RANGED, ids=[r[0] for r in RANGED])
def test_the_bounds_themselves(model, path, put):
    high = {"subsidy": "100", "markup": "1000", "dedicated_uplift": "1000"}.get(model, str(MAX_AMOUNT))
    assert problems(model, **put(high)) == []
    if model == "subsidy":
        assert "more than 0 and at most 100" in one_problem(model, **put("0"))
    else:
        assert problems(model, **put("0")) == []


@pytest.mark.parametrize("model,path,put", RANGED, ids=[r[0] for r in RANGED])
def test_floats_are_still_refused(model, path, put):
    assert "write amounts in quotes" in one_problem(model, **put(12.5))


@pytest.mark.parametrize("value", ["1e400", "NaN", "Infinity", "ten", True])
def test_what_is_not_a_number_is_refused(value):
    assert problems("fixed_fee", amount=value)


def test_values_are_kept_exact():
    assert build_model("fixed_fee", {"amount": "0.10"}).params.amount == D("0.10")
    assert build_model("markup", {"percent": 12}).params.percent == D(12)


@pytest.mark.parametrize("up_to,expected", [(0, "greater than 0"), (-5, "greater than 0"), ("10", "valid integer"),
                                            (10.0, "valid integer"), (True, "valid integer")])
def test_graduated_tiers_end_at_a_positive_whole_number(up_to, expected):
    message = one_problem("graduated_usage", tiers=[{"up_to": up_to, "unit_price": "1"}, TIERS[1]])
    assert message.startswith("charges[0] (graduated_usage).tiers.0.up_to") and expected in message


# ---- description templates ------------------------------------------------------------

TEMPLATED = {"fixed_fee": {"amount": "1"}, "tier_fee": {"fees": {"education": "1"}},
             "dedicated_uplift": {"percent": "50"}, "graduated_usage": {"tiers": TIERS}, "markup": {"percent": "10"},
             "cap": {"amount": "10"}, "discount": {"percent": "10"}, "minimum": {"amount": "10"}}


def test_models_with_a_description_declare_its_placeholders():
    declared = {name: model_class(name).Params.placeholders for name in TEMPLATED}
    assert declared == {"fixed_fee": ("amount", "currency"), "tier_fee": ("kind",),
                        "dedicated_uplift": ("percent", "base"), "graduated_usage": ("first", "last"),
                        "markup": ("percent", "base"), "cap": ("amount", "currency", "scope"),
                        "discount": ("discount", "scope", "base"), "minimum": ("amount", "period", "charged")}


@pytest.mark.parametrize("model", TEMPLATED)
def test_declared_placeholders_and_literal_braces_are_accepted(model):
    placeholders = model_class(model).Params.placeholders
    template = "{{note}} " + " ".join(f"{{{p}}}" for p in placeholders)
    assert problems(model, **TEMPLATED[model], description=template) == []


@pytest.mark.parametrize("model", TEMPLATED)
@pytest.mark.parametrize("template,problem", [
    ("Fee for {name}", "{name}: unknown placeholder"),
    ("{percent.__class__}", "{percent.__class__}: no attribute or index access"),
    ("{x[0]}", "{x[0]}: no attribute or index access"),
    ("{}", "{}: placeholders are names"),
    ("{0}", "{0}: placeholders are names"),
    ("Fee {", "unbalanced braces"),
    ("Fee }", "unbalanced braces"),
    ("{a!}", "unbalanced braces"),
])
def test_bad_templates_are_refused_with_the_known_placeholders(model, template, problem):
    message = one_problem(model, **TEMPLATED[model], description=template)
    assert message.startswith(f"charges[0] ({model}).description: {problem}")
    assert message.endswith(f"(got {template!r})")
    if "unbalanced" not in problem:
        known = ", ".join(f"{{{p}}}" for p in model_class(model).Params.placeholders)
        assert f"this model's description may use {known}, and {{{{ }}}} for literal braces" in message


@pytest.mark.parametrize("model", TEMPLATED)
@pytest.mark.parametrize("suffix", ["!r", "!s", ":>10", ":.2f", ":{x}"])
def test_conversions_and_format_specs_are_refused(model, suffix):
    name = model_class(model).Params.placeholders[0]
    message = one_problem(model, **TEMPLATED[model], description=f"{{{name}{suffix}}}")
    assert f"(got '{{{name}{suffix}}}')" in message and "no !conversion or :format spec" in message


def test_describe_fills_in_exactly_the_declared_placeholders():
    markup = build_model("markup", {"percent": "10", "description": "{{Markup}} {percent} %"})
    assert markup.describe(percent="10", base="$5.00") == "{Markup} 10 %"
    with pytest.raises(TypeError, match="declares placeholders"):
        markup.describe(percent="10", base="$5.00", extra="x")
    with pytest.raises(TypeError, match="declares placeholders"):
        markup.describe(percent="10")
    with pytest.raises(TypeError, match="declares placeholders"):
        markup.describe()


def test_a_model_default_template_is_checked_too():
    from pricing_models.base import ModelParams

    class Params(ModelParams):
        placeholders = ("known",)
        description: str = "Fee {unknown}"

    with pytest.raises(ValueError, match="unknown placeholder"):
        Params()


# ---- discount ---------------------------------------------------------------------------

@pytest.mark.parametrize("params,problem", [
    ({}, "charges[0] (discount): give exactly one of percent (a share of what the discount applies to) and amount"),
    ({"percent": "10", "amount": "5"}, "charges[0] (discount): give exactly one of percent"),
    ({"percent": "0"}, "charges[0] (discount).percent: must be a percentage more than 0 and at most 100 (got '0')"),
    ({"percent": "-10"}, "charges[0] (discount).percent: must be a percentage more than 0 and at most 100"),
    ({"percent": "100.5"}, "charges[0] (discount).percent: must be a percentage more than 0 and at most 100"),
    ({"amount": "0"}, "charges[0] (discount).amount: must be an amount more than 0 and at most 1,000,000,000,000"),
    ({"amount": "-50.00"}, "(discount).amount: must be an amount more than 0 and at most 1,000,000,000,000; write "
                           "the amount as a positive number (got '-50.00')"),
    ({"amount": "1e13"}, "(discount).amount: must be an amount more than 0 and at most 1,000,000,000,000 (got"),
    ({"amount": 5.5}, "(discount).amount: write amounts in quotes"),
    ({"percent": "5", "applies_to": "tax"}, "(discount).applies_to: Input should be 'all', 'fees' or 'cloud'"),
    ({"percent": "5", "description": "{percent} off"}, "(discount).description: {percent}: unknown placeholder; "
                                                        "this model's description may use {discount}, {scope}"),
])
def test_discount_parameters(params, problem):
    assert problem in one_problem("discount", **params)


@pytest.mark.parametrize("params", [{"percent": "100"}, {"percent": "0.01", "applies_to": "cloud"},
                                    {"amount": "0.01", "applies_to": "fees"}, {"amount": str(MAX_AMOUNT)}])
def test_discount_accepts_its_bounds(params):
    assert problems("discount", **params) == []


def test_the_readme_table_states_every_declared_range():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    rows = {line.split("`")[1]: line for line in readme.splitlines() if line.startswith("| `")}
    assert set(known_models()) <= set(rows)
    for model in known_models():
        for param, words in parameter_ranges(model_class(model).Params).items():
            name = param.split(".")[0].split("[")[0]
            assert f"`{name}" in rows[model] and words.split(" ", 2)[2] in rows[model], (model, param, words)
