"""Pricing models from installed packages (entry points), and plans that try to name code."""
import re
import subprocess
import sys
import tomllib
from decimal import Decimal as D
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import pricing_models.base as base
from billing.config import parse_organization
from billing.errors import ConfigError
from billing.months import Month
from helpers import small_org_data
from pricing_models import ENTRY_POINT_GROUP, PricingContext, build_model, known_models, model_class, validate_plan

PLUGIN = '''
from pathlib import Path
from pricing_models.base import Charge, ModelParams, PositiveMoney, PricingModel, rounded_sum

Path(__file__).with_name("plugin-was-imported").touch()


class EarlyBird(PricingModel):
    """A flat amount off the service fees."""

    class Params(ModelParams):
        placeholders = ("amount",)
        amount: PositiveMoney
        description: str = "Early-bird discount of {amount}"

    def charges(self, ctx, earlier):
        fees = rounded_sum(earlier, kinds={"fee"})
        off = min(fees, self.params.amount)
        return [Charge("discount", self.describe(amount=off), -off, ctx.currency)] if off > 0 else []


def helper():
    pass
'''


def install(site, dist: str, entry_points: dict[str, str], modules: dict[str, str] | None = None):
    """A fake installed distribution: a dist-info folder with METADATA and entry_points.txt, and its modules."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")
    for module, source in (modules or {}).items():
        (site / f"{module}.py").write_text(source)


@pytest.fixture()
def site(tmp_path, monkeypatch):
    """A folder on sys.path holding fake installed packages; the registry and sys.modules are restored after."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    monkeypatch.syspath_prepend(str(folder))
    before = set(sys.modules)
    yield folder
    for name in set(sys.modules) - before:
        if name.startswith("hb_fake"):
            del sys.modules[name]


@pytest.fixture()
def early_bird(site):
    install(site, "hb-fake-pricing", {"early_bird": "hb_fake_pricing:EarlyBird",
                                      "not_a_model": "hb_fake_pricing:helper",
                                      "broken": "hb_fake_broken:Model",
                                      "markup": "hb_fake_pricing:EarlyBird"},
            {"hb_fake_pricing": PLUGIN, "hb_fake_broken": "raise RuntimeError('needs a licence key')\n"})
    return site


def plan_problems(*specs: dict) -> list[str]:
    charges = [SimpleNamespace(model=s["model"], params={k: v for k, v in s.items() if k != "model"}) for s in specs]
    return validate_plan(SimpleNamespace(charges=charges))


def test_an_installed_model_is_listed_without_being_imported(early_bird):
    assert {"early_bird", "broken", "not_a_model", "discount"} <= set(known_models())
    assert "hb_fake_pricing" not in sys.modules and not (early_bird / "plugin-was-imported").exists()


def test_an_installed_model_is_loaded_when_a_plan_names_it(early_bird):
    assert plan_problems({"model": "early_bird", "amount": "50"}) == []
    assert (early_bird / "plugin-was-imported").exists()
    cls = model_class("early_bird")
    assert cls.__module__ == "hb_fake_pricing" and cls.name == "early_bird" and "early_bird" in base._REGISTRY
    community = SimpleNamespace(id="c1", name="C", kind="education")
    context = PricingContext(Month(2024, 1), community, None, "USD")
    fee = build_model("fixed_fee", {"amount": "120"}).charges(context, ())
    (line,) = build_model("early_bird", {"amount": "50"}).charges(context, tuple(fee))
    assert (line.kind, line.description, line.amount) == ("discount", "Early-bird discount of 50", D("-50"))


def test_an_installed_model_gets_the_same_checks_as_a_built_in_one(early_bird):
    assert plan_problems({"model": "early_bird", "amount": "-5"}, {"model": "early_bird", "amount": "5",
                                                                    "description": "{percent}"}) == [
        "charges[0] (early_bird).amount: must be an amount more than 0 and at most 1,000,000,000,000; "
        "write the amount as a positive number (got '-5')",
        "charges[1] (early_bird).description: {percent}: unknown placeholder; this model's description may use "
        "{amount}, and {{ }} for literal braces (got '{percent}')"]


def test_an_installed_model_in_an_organization(early_bird, tmp_path):
    data = small_org_data()
    data["pricing_plans"][0]["charges"].append({"model": "early_bird", "amount": "25.00"})
    org = parse_organization(data, "org.yaml", tmp_path)
    assert org.plan("alpha-2022").charges[-1].model == "early_bird"


def test_an_entry_point_that_fails_to_import_is_one_line(early_bird):
    assert plan_problems({"model": "broken"}) == [
        "charges[0].model: pricing model 'broken': cannot load 'hb_fake_broken:Model' (package hb-fake-pricing): "
        "RuntimeError: needs a licence key"]


def test_an_entry_point_that_is_not_a_model_is_refused(early_bird):
    (problem,) = plan_problems({"model": "not_a_model"})
    assert problem.endswith("'hb_fake_pricing:helper' (package hb-fake-pricing) is not a PricingModel subclass "
                            "whose Params is a ModelParams")


def test_a_built_in_name_is_never_taken_over_by_a_package(early_bird):
    assert model_class("markup").__module__ == "pricing_models.cloud"
    assert "hb_fake_pricing" not in sys.modules


def test_one_name_from_two_packages_is_refused(early_bird):
    install(early_bird, "hb-other-pricing", {"early_bird": "hb_fake_other:EarlyBird"})
    (problem,) = plan_problems({"model": "early_bird", "amount": "5"})
    assert "'early_bird' is registered by more than one installed package" in problem
    assert "'hb_fake_pricing:EarlyBird' (package hb-fake-pricing)" in problem and "hb-other-pricing" in problem
    assert "hb_fake_pricing" not in sys.modules


def test_an_unknown_name_lists_the_known_ones(early_bird):
    (problem,) = plan_problems({"model": "early_birds"})
    assert problem.startswith("charges[0].model: unknown pricing model 'early_birds'; known: [")
    assert "'early_bird'" in problem and "'discount'" in problem and "'tier_fee'" in problem


@pytest.mark.parametrize("name", ["os:system", "some.module:Class", "hb_fake_pricing:EarlyBird", "hb_fake_pricing.x",
                                  "pricing_models.cloud:Markup", "subprocess:run"])
def test_a_plan_cannot_name_code(early_bird, name):
    already = set(sys.modules)
    (problem,) = plan_problems({"model": name})
    assert problem == (f"charges[0].model: pricing model {name!r}: a configuration names a model, it cannot import "
                       f"code; install a package that registers the model under the entry-point group "
                       f"'hub_billing.pricing_models' and write the name it registers (README, \"Adding a pricing "
                       f"model\")")
    assert set(sys.modules) == already
    assert not (early_bird / "plugin-was-imported").exists()


def test_validate_refuses_a_plan_naming_code_with_exit_code_two(tmp_path):
    data = small_org_data()
    data["pricing_plans"][0]["charges"].append({"model": "os:system", "command": "touch pwned"})
    path = tmp_path / "org.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = subprocess.run([sys.executable, "-m", "billing.cli", "validate", "--org", str(path)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "pricing_plans[0] (alpha-2022).charges[3].model: pricing model 'os:system': a configuration names a " \
           "model, it cannot import code" in proc.stderr
    assert not (tmp_path / "pwned").exists()


def test_parse_organization_reports_it_as_a_config_error(tmp_path):
    data = small_org_data()
    data["pricing_plans"][1]["charges"][0] = {"model": "some.module:Class"}
    with pytest.raises(ConfigError, match=r"charges\[0\]\.model: pricing model 'some.module:Class': a configuration"):
        parse_organization(data, "org.yaml", tmp_path)
    assert "some" not in sys.modules and "some.module" not in sys.modules


def test_the_readme_example_works_as_written(site):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("### Adding a pricing model"):readme.index("### Adding a cloud source")]
    code = re.search(r"```python\n# mypkg/discount.py\n(.*?)```", section, re.S).group(1)
    toml = tomllib.loads(re.search(r"```toml\n(.*?)```", section, re.S).group(1))
    entry_points = toml["project"]["entry-points"][ENTRY_POINT_GROUP]
    assert entry_points == {"early_bird": "mypkg.discount:EarlyBird"}
    (site / "mypkg").mkdir()
    (site / "mypkg" / "__init__.py").write_text("")
    (site / "mypkg" / "discount.py").write_text(code)
    install(site, "mypkg", entry_points)
    try:
        plan = [{"model": "fixed_fee", "amount": "120"}, {"model": "early_bird", "amount": "100.00"}]
        assert plan_problems(*plan) == []
        assert "(early_bird).amount: must be an amount more than 0" in plan_problems({"model": "early_bird",
                                                                                       "amount": "-1"})[0]
        community = SimpleNamespace(id="c1", name="C", kind="education")
        context = PricingContext(Month(2024, 1), community, None, "USD")
        fee = build_model("fixed_fee", {"amount": "120"}).charges(context, ())
        (line,) = build_model("early_bird", {"amount": "100.00"}).charges(context, tuple(fee))
        assert (line.kind, line.description, line.amount) == ("discount", "Early-bird discount (100.00)", D("-100.00"))
    finally:
        for name in ("mypkg", "mypkg.discount"):
            sys.modules.pop(name, None)
