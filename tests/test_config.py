import subprocess
import sys

import pytest
import yaml

from billing.config import load_organization, parse_organization
from billing.errors import ConfigError
from helpers import small_org_data


def test_small_org_is_valid(tmp_path):
    org = parse_organization(small_org_data(), "org.yaml", tmp_path)
    assert [c.id for c in org.clusters] == ["shared", "alpha-dedicated"]


def test_every_problem_is_reported_with_path_and_value(tmp_path):
    data = small_org_data()
    data["clusters"][0]["provider"] = "gpc"
    data["hubs"][0]["community"] = "nobody"
    with pytest.raises(ConfigError) as err:
        parse_organization(data, "org.yaml", tmp_path)
    text = str(err.value)
    assert "org.yaml: clusters[0] (shared).provider" in text and "'gpc'" in text


def test_cross_references_and_plan_parameters(tmp_path):
    data = small_org_data()
    data["hubs"][0]["community"] = "nobody"
    data["pricing_plans"][0]["charges"][0]["fees"]["education"] = 1000.5
    data["pricing_plans"][1]["charges"].append({"model": "no_such_model"})
    with pytest.raises(ConfigError) as err:
        parse_organization(data, "org.yaml", tmp_path)
    text = str(err.value)
    assert "no community 'nobody'" in text
    data["hubs"][0]["community"] = "alpha"
    with pytest.raises(ConfigError) as err:
        parse_organization(data, "org.yaml", tmp_path)
    text = str(err.value)
    assert "write amounts in quotes" in text and "unknown pricing model 'no_such_model'" in text


def test_bad_yaml_names_line(tmp_path):
    path = tmp_path / "org.yaml"
    path.write_text("name: x\nissuer: [unclosed\n")
    with pytest.raises(ConfigError, match=r"org.yaml: not valid YAML at line"):
        load_organization(path)


def test_cli_validate_exit_code_two_and_no_traceback(tmp_path):
    data = small_org_data()
    data["clusters"][1]["tenancy"] = "shared"
    path = tmp_path / "org.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = subprocess.run([sys.executable, "-m", "billing.cli", "validate", "--org", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "clusters[1] (alpha-dedicated)" in proc.stderr
