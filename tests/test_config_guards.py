"""`billing validate` refuses, up front, every configuration that would later fail or produce wrong money.

Each test writes a small organization (tests/helpers.py) with one thing
wrong, runs `billing validate --org` in-process and checks the exit code (2),
that there is no traceback, and the message: file, path, value.
"""
import re
import time

import pytest
import yaml

from billing.cli import main
from billing.config import MAX_CONFIG_BYTES, default_organization_path, load_organization, parse_organization
from billing.errors import ConfigError
from helpers import small_org_data


def write(tmp_path, content) -> str:
    """A config file from a dict (dumped as YAML) or from YAML text."""
    path = tmp_path / "org.yaml"
    if isinstance(content, (bytes, bytearray)):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False),
                        encoding="utf-8")
    return str(path)


def refused(tmp_path, capsys, content) -> str:
    """`billing validate` exits with 2, without a traceback; returns what it printed."""
    path = write(tmp_path, content)
    assert main(["validate", "--org", path]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith(f"error: {path}")
    return err.replace(path, "org.yaml")


def test_sample_organization_validates(capsys):
    assert main(["validate"]) == 0
    assert "valid" in capsys.readouterr().out
    load_organization(default_organization_path())


def test_small_org_written_by_safe_dump_validates(tmp_path, capsys):
    # safe_dump writes the shared billing contact once and repeats it with aliases: they are allowed
    text = yaml.safe_dump(small_org_data())
    assert "*id001" in text
    assert main(["validate", "--org", write(tmp_path, text)]) == 0


# ---- the YAML itself -------------------------------------------------------------------------------


def test_duplicate_keys_are_refused_with_line_and_path(tmp_path, capsys):
    lines = yaml.safe_dump(small_org_data(), sort_keys=False).splitlines()
    assert lines[0] == "name: Test Org"
    lines.insert(1, "name: Other Org")
    first = lines.index("  name: Beta Lab") + 1
    lines.insert(first, "  name: Beta Laboratory")
    err = refused(tmp_path, capsys, "\n".join(lines) + "\n")
    assert ("org.yaml: line 2: (top level): the key 'name' is given twice (first at line 1); "
            "YAML would silently keep only the last value") in err
    assert (f"org.yaml: line {first + 1}: communities[1] (beta): the key 'name' is given twice "
            f"(first at line {first})") in err


def test_duplicate_keys_reported_with_the_other_problems(tmp_path, capsys):
    data = small_org_data()
    data["communities"][0]["currency"] = "XYZ"
    text = yaml.safe_dump(data, sort_keys=False).replace("name: Test Org\n", "name: Test Org\nname: Other\n", 1)
    err = refused(tmp_path, capsys, text)
    assert "the key 'name' is given twice" in err and "communities[0] (alpha).currency: 'XYZ'" in err


def test_alias_bomb_is_refused_quickly(tmp_path, capsys):
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    text = "\n".join(levels) + "\nname: *a9\n"
    started = time.monotonic()
    err = refused(tmp_path, capsys, text)
    assert time.monotonic() - started < 5
    assert re.search(r"org.yaml: its aliases \(\*name\) expand it to [0-9,]{14} values; "
                     r"at most 1,000,000 are read", err)


def test_alias_cycle_is_refused(tmp_path, capsys):
    err = refused(tmp_path, capsys, "name: &loop [a, *loop]\n")
    assert "org.yaml: line 1: an alias refers to a value that contains it" in err


def test_huge_file_is_refused_before_reading(tmp_path, capsys):
    err = refused(tmp_path, capsys, "# " + "x" * MAX_CONFIG_BYTES + "\n")
    assert f"the configuration is {MAX_CONFIG_BYTES + 3:,} bytes; at most {MAX_CONFIG_BYTES:,} are read" in err


def test_deep_nesting_is_refused(tmp_path, capsys):
    err = refused(tmp_path, capsys, "name: " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert "nested too deeply" in err


def test_file_that_is_not_utf8_is_refused(tmp_path, capsys):
    err = refused(tmp_path, capsys, "name: ok\nissuer:\n  name: Caf\xe9\n".encode("latin-1"))
    assert "org.yaml: not UTF-8 text: byte b'\\xe9' at line 3; save the file as UTF-8" in err


def test_several_documents_are_refused(tmp_path, capsys):
    err = refused(tmp_path, capsys, "name: a\n---\nname: b\n")
    assert ("org.yaml: not valid YAML at line 2, column 1: expected a single document in the stream"
            ", but found another document") in err


# ---- currencies ------------------------------------------------------------------------------------


def test_currencies_must_be_iso_4217(tmp_path, capsys):
    data = small_org_data()
    data["funders"][0]["currency"] = "XAU"           # gold: ISO 4217, but not money one invoices in
    data["communities"][0]["currency"] = "XYZ"
    data["communities"][1]["currency"] = "usd"
    data["pricing_plans"][0]["currency"] = "EURO"
    data["exchange_rates"] = [{"month": "2022-01", "from": "ABC", "to": "EUR", "rate": "0.9"},
                              {"month": "2022-01", "from": "USD", "to": "XXX", "rate": "0.9"}]
    err = refused(tmp_path, capsys, data)
    assert "funders[0] (grant).currency: 'XAU' is not an ISO 4217 currency code (e.g. USD, EUR)" in err
    assert "communities[0] (alpha).currency: 'XYZ' is not an ISO 4217 currency code (e.g. USD, EUR)\n" in err
    assert "communities[1] (beta).currency: 'usd' is not an ISO 4217 currency code (e.g. USD, EUR); " \
           "write it in capitals: 'USD'" in err
    assert "pricing_plans[0] (alpha-2022).currency: 'EURO' is not an ISO 4217 currency code" in err
    assert "exchange_rates[0].from: 'ABC' is not an ISO 4217 currency code" in err
    assert "exchange_rates[1].to: 'XXX' is not an ISO 4217 currency code" in err


def test_funder_invoiced_in_another_currency_than_its_community(tmp_path, capsys):
    data = small_org_data()
    data["communities"][1]["currency"] = "EUR"
    data["pricing_plans"][1]["currency"] = "EUR"
    err = refused(tmp_path, capsys, data)
    assert ("org.yaml: communities[1] (beta).currency: EUR, but its funder 'grant' is invoiced in USD; a funder's "
            "invoice is in one currency: invoice them in the same currency or use another funder") in err
    data["funders"][0]["currency"] = "EUR"
    parse_organization(data, "org.yaml", tmp_path)


# ---- text that reaches documents -------------------------------------------------------------------


def test_lone_surrogate_written_as_yaml_escape_is_refused(tmp_path, capsys):
    text = yaml.safe_dump(small_org_data(), sort_keys=False).replace(
        "name: Beta Lab", 'name: "Beta \\uD800 Lab"', 1)
    err = refused(tmp_path, capsys, text)
    assert ("org.yaml: communities[1] (beta).name: 'Beta \\ud800 Lab' contains the lone surrogate U+D800, "
            "which cannot be written as UTF-8") in err


def test_control_characters_are_refused_in_values_and_keys(tmp_path, capsys):
    data = small_org_data()
    data["communities"][0]["billing_contact"] = {"name": "Office\x1b[31m", "address": ["1 Main\x00St"]}
    data["issuer"]["payment_instructions"] = ["Pay by wire.\nQuote the number.\tThanks"]   # tab, newline: fine
    data["hubs"][0]["note\x07"] = "x"
    err = refused(tmp_path, capsys, data)
    assert ("org.yaml: communities[0] (alpha).billing_contact.name: 'Office\\x1b[31m' contains the control "
            "character U+001B ('\\x1b'); only tab and newline are allowed") in err
    assert "communities[0] (alpha).billing_contact.address[0]: '1 Main\\x00St' contains the control character " \
           "U+0000" in err
    assert "hubs[0] (alpha-shared): the key 'note\\x07' contains the control character U+0007" in err
    assert "payment_instructions" not in err


def test_secret_setting_is_not_echoed(tmp_path, capsys):
    err = refused(tmp_path, capsys, small_org_data(ledger_url="postgresql://u:hunter2@h/db\x00"))
    assert "ledger_url: the value contains the control character U+0000" in err and "hunter2" not in err
    err = refused(tmp_path, capsys, small_org_data(ledger_url="nosuchdb://u:hunter2@h/db"))
    assert "ledger_url: not a database URL that SQLAlchemy can open" in err and "hunter2" not in err


def test_empty_names_are_refused(tmp_path, capsys):
    data = small_org_data(name=" ")
    data["issuer"]["name"] = ""
    data["communities"][0]["name"] = ""
    data["funders"][0]["billing_contact"] = {"name": "  "}
    data["pricing_plans"][0]["name"] = ""
    err = refused(tmp_path, capsys, data)
    for where in ("name", "issuer.name", "communities[0] (alpha).name", "funders[0] (grant).billing_contact.name",
                  "pricing_plans[0] (alpha-2022).name"):
        assert f"org.yaml: {where}: must not be empty" in err


# ---- months ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("month, why", [
    ("2022-13", "not a month: '2022-13' (the month is 01 to 12)"),
    ("0000-01", "not a month: '0000-01' (the year is 0001 to 9997)"),
    ("2022-1", "not a month in the form YYYY-MM (e.g. 2022-01): '2022-1'"),
    (" 2022-01", "write the month exactly as YYYY-MM: '2022-01', not ' 2022-01'"),
])
def test_impossible_months_are_refused_everywhere(tmp_path, capsys, month, why):
    data = small_org_data(exchange_rates=[{"month": month, "from": "USD", "to": "EUR", "rate": "0.9"}])
    data["communities"][0]["active_from"] = month
    data["communities"][1]["active_until"] = month
    err = refused(tmp_path, capsys, data)
    # a contract date may also be a day (YYYY-MM-DD), and says so
    contract_why = "not a month YYYY-MM or a date YYYY-MM-DD: '2022-1'" if month == "2022-1" else why
    for where, expected in (("communities[0] (alpha).active_from", contract_why),
                            ("communities[1] (beta).active_until", contract_why), ("exchange_rates[0].month", why)):
        assert f"org.yaml: {where}: {expected}\n" in err


def test_active_until_before_active_from(tmp_path, capsys):
    data = small_org_data()
    data["communities"][1].update(active_from="2022-05", active_until="2022-04")
    err = refused(tmp_path, capsys, data)
    assert "org.yaml: communities[1] (beta): active_until 2022-04 is before active_from 2022-05" in err


# ---- exchange rates --------------------------------------------------------------------------------


def test_exchange_rates_must_be_positive_and_sane(tmp_path, capsys):
    rates = [{"month": "2022-01", "from": "USD", "to": "EUR", "rate": r} for r in ("0", "-0.9", "1e12", "1e-12", 0.9)]
    err = refused(tmp_path, capsys, small_org_data(exchange_rates=rates))
    assert "exchange_rates[0].rate: a rate must be greater than 0 (got '0')" in err
    assert "exchange_rates[1].rate: a rate must be greater than 0 (got '-0.9')" in err
    assert ("exchange_rates[2].rate: a rate must be between 0.000000001 and 1000000000: no two currencies are that "
            "far apart; check for a typo or a rate written the wrong way round (got '1e12')") in err
    assert "exchange_rates[3].rate: a rate must be between" in err
    assert 'exchange_rates[4].rate: write amounts in quotes to keep them exact, e.g. "0.9"' in err


def test_exchange_rate_between_one_currency_and_itself(tmp_path, capsys):
    err = refused(tmp_path, capsys, small_org_data(
        exchange_rates=[{"month": "2022-01", "from": "USD", "to": "USD", "rate": "1"}]))
    assert "org.yaml: exchange_rates[0]: from and to are both USD: a rate converts one currency into another" in err


def test_two_rates_for_the_same_month_and_currencies(tmp_path, capsys):
    rate = {"month": "2022-01", "from": "USD", "to": "EUR", "rate": "0.9"}
    other = {"month": "2022-02", "from": "USD", "to": "EUR", "rate": "0.9"}
    inverse = {"month": "2022-01", "from": "EUR", "to": "USD", "rate": "1.1"}
    err = refused(tmp_path, capsys, small_org_data(exchange_rates=[rate, other, inverse, dict(rate, rate="0.91")]))
    assert ("org.yaml: exchange_rates[3]: a second rate from USD to EUR for 2022-01 (the first is exchange_rates[0]); "
            "give one") in err
    assert err.count("a second rate") == 1


# ---- issuer ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["INV-2", "2022", "-INV", "INV-", "INV--X", "inv", "ABCDEFGHIJKLM", ""])
def test_invoice_prefix_that_would_make_numbers_ambiguous(tmp_path, capsys, prefix):
    data = small_org_data()
    data["issuer"]["invoice_prefix"] = prefix
    err = refused(tmp_path, capsys, data)
    assert f"org.yaml: issuer.invoice_prefix: {prefix!r} cannot start invoice numbers (PREFIX-YYYY-NNNN)" in err


@pytest.mark.parametrize("prefix", ["INV", "OHC-EU", "A1", "X-Y2-Z"])
def test_good_invoice_prefixes(tmp_path, prefix):
    data = small_org_data()
    data["issuer"]["invoice_prefix"] = prefix
    assert parse_organization(data, "org.yaml", tmp_path).issuer.invoice_prefix == prefix


@pytest.mark.parametrize("days, why", [(True, "Input should be a valid integer (got True)"),
                                       (-1, "Input should be greater than or equal to 0 (got -1)"),
                                       (400, "Input should be less than or equal to 365 (got 400)")])
def test_payment_terms(tmp_path, capsys, days, why):
    data = small_org_data()
    data["issuer"]["payment_terms_days"] = days
    assert f"org.yaml: issuer.payment_terms_days: {why}" in refused(tmp_path, capsys, data)


def test_email_addresses(tmp_path, capsys):
    data = small_org_data()
    data["issuer"]["email"] = "billing at example.org"
    assert "issuer.email: not an email address: 'billing at example.org'" in refused(tmp_path, capsys, data)


# ---- hubs and clusters -----------------------------------------------------------------------------


def test_hub_tag_values_that_can_never_match(tmp_path, capsys):
    data = small_org_data()
    data["hubs"][0]["tag_value"] = ""
    data["hubs"][1]["tag_value"] = "kube-system"
    err = refused(tmp_path, capsys, data)
    assert "org.yaml: hubs[0] (alpha-shared).tag_value: must not be empty (got '')" in err
    data["hubs"][0]["tag_value"] = "alpha"
    err = refused(tmp_path, capsys, data)
    assert ("org.yaml: hubs[1] (beta-shared).tag_value: 'kube-system' is one of cluster 'shared''s "
            "overhead_tag_values ['kube-system', 'support']: its cost would be counted as the cluster's overhead, "
            "not as this hub's") in err


def test_two_hubs_on_one_sub_account(tmp_path, capsys):
    data = small_org_data()
    data["hubs"][0] = {"id": "alpha-shared", "cluster": "shared", "community": "alpha", "sub_account": "111100000000"}
    data["hubs"][1] = {"id": "beta-shared", "cluster": "shared", "community": "beta", "sub_account": "111100000000"}
    err = refused(tmp_path, capsys, data)
    assert ("org.yaml: hubs[1] (beta-shared).sub_account: '111100000000' already names hub 'alpha-shared' "
            "on cluster 'shared'") in err


def test_empty_account_fields(tmp_path, capsys):
    data = small_org_data()
    data["clusters"][0].update(billing_account="", hub_tag=" ", sub_accounts=[""])
    err = refused(tmp_path, capsys, data)
    for where in ("billing_account", "hub_tag", "sub_accounts[0]"):
        assert f"org.yaml: clusters[0] (shared).{where}: must not be empty" in err


# ---- plans tried on every community ----------------------------------------------------------------


def test_plan_without_a_fee_for_the_community_kind(tmp_path, capsys):
    data = small_org_data()
    del data["pricing_plans"][0]["charges"][0]["fees"]["education"]
    err = refused(tmp_path, capsys, data)
    assert ("org.yaml: communities[0] (alpha).pricing_plan: plan 'alpha-2022' cannot price this community: "
            "charges[0] (tier_fee): plan has no fee for community kind 'education'") in err


def test_subsidy_without_a_funder(tmp_path, capsys):
    data = small_org_data()
    del data["communities"][1]["funder"]
    err = refused(tmp_path, capsys, data)
    assert ("org.yaml: communities[1] (beta).pricing_plan: plan 'grant-plan' cannot price this community: "
            "charges[2] (subsidy): community 'beta' has a subsidy in its plan but no funder") in err


def test_funder_whose_plan_bills_it_nothing(tmp_path, capsys):
    data = small_org_data()
    data["communities"][0]["funder"] = "grant"
    err = refused(tmp_path, capsys, data)
    assert ("org.yaml: communities[0] (alpha).funder: 'grant', but its plans bill nothing to a funder "
            "(no subsidy), while the invoices would say 'Big Grant' pays part of the charges; remove the funder or "
            "give a plan a subsidy") in err


def test_description_the_model_cannot_fill_in(tmp_path, capsys):
    data = small_org_data()
    data["pricing_plans"][0]["charges"][0]["description"] = "Fee ({tier})"
    err = refused(tmp_path, capsys, data)
    assert "pricing_plans[0] (alpha-2022).charges[0] (tier_fee).description: {tier}: unknown placeholder; " \
           "this model's description may use {kind}" in err


# ---- all together ----------------------------------------------------------------------------------


def test_every_problem_is_reported_together(tmp_path, capsys):
    data = small_org_data()
    data["communities"][0]["currency"] = "XYZ"
    data["communities"][1]["active_from"] = "2022-13"
    data["issuer"]["name"] = "Hubs\x00"
    data["exchange_rates"] = [{"month": "2022-01", "from": "USD", "to": "EUR", "rate": "0"}]
    err = refused(tmp_path, capsys, data)
    assert err.count("\n  - ") == 4


def test_relations_are_reported_together(tmp_path, capsys):
    data = small_org_data()
    data["communities"][1]["currency"] = "EUR"
    data["pricing_plans"][1]["currency"] = "EUR"
    data["hubs"][0]["tag_value"] = "support"
    rate = {"month": "2022-01", "from": "USD", "to": "EUR", "rate": "0.9"}
    data["exchange_rates"] = [rate, rate]
    err = refused(tmp_path, capsys, data)
    assert err.count("\n  - ") == 3


def test_problems_without_a_file(tmp_path):
    data = small_org_data()
    data["communities"][0]["currency"] = "XYZ"
    with pytest.raises(ConfigError, match=r"<inline>: communities\[0\] \(alpha\).currency: 'XYZ'"):
        parse_organization(data)


def test_a_contract_date_may_be_written_unquoted(tmp_path):
    text = yaml.safe_dump(small_org_data(), sort_keys=False).replace(
        "  kind: education\n", "  kind: education\n  active_from: 2022-05-13\n", 1)
    (tmp_path / "org.yaml").write_text(text)
    org = load_organization(tmp_path / "org.yaml")
    assert org.communities[0].active_from == "2022-05-13"


def test_bidirectional_overrides_are_refused(tmp_path):
    from billing.config import parse_organization
    from billing.errors import ConfigError
    from helpers import small_org_data

    data = small_org_data()
    data["communities"][0]["name"] = "Alpha \u202egnp.exe"
    with pytest.raises(ConfigError) as err:
        parse_organization(data, "org.yaml", tmp_path)
    assert "communities[0] (alpha).name" in str(err.value) and "bidirectional override U+202E" in str(err.value)
