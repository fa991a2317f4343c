"""What an invoice needs about its seller and its customers: country, paper size, fiscal sponsor, PO numbers."""
import pytest
import yaml

from billing.config import load_organization, parse_organization
from billing.errors import ConfigError
from helpers import small_org_data

AP_FIELDS = {"purchase_order": "PO 4500123456", "customer_reference": "Dept. of Statistics / grant 22-117",
             "legal_name": "The Regents of Alpha University", "tax_id": "VAT DE123456789"}


def problems(data, tmp_path) -> str:
    with pytest.raises(ConfigError) as err:
        parse_organization(data, "org.yaml", tmp_path)
    return str(err.value)


def test_customers_take_purchase_order_reference_legal_name_and_tax_id(tmp_path):
    data = small_org_data()
    data["communities"][0].update(AP_FIELDS)
    data["funders"][0].update(AP_FIELDS)
    org = parse_organization(data, "org.yaml", tmp_path)
    for party in (org.community("alpha"), org.funder("grant")):
        assert {k: getattr(party, k) for k in AP_FIELDS} == AP_FIELDS
    beta = org.community("beta")
    assert (beta.purchase_order, beta.customer_reference, beta.legal_name, beta.tax_id) == (None, None, None, None)


@pytest.mark.parametrize("field", sorted(AP_FIELDS))
@pytest.mark.parametrize("value,problem", [("  ", "must not be empty"), ("PO\x07", "control character"),
                                           ("PO \u202e1", "bidirectional override")])
def test_customer_fields_are_checked_like_other_text(tmp_path, field, value, problem):
    data = small_org_data()
    data["communities"][0][field] = value
    text = problems(data, tmp_path)
    assert f"communities[0] (alpha).{field}" in text and problem in text


def test_a_purchase_order_written_as_a_number_is_refused_with_a_hint(tmp_path):
    data = small_org_data()
    data["communities"][0]["purchase_order"] = 4500123456
    text = problems(data, tmp_path)
    assert "communities[0] (alpha).purchase_order" in text and "write it in quotes, e.g. '4500123456'" in text


def test_issuer_country_page_size_and_fiscal_sponsor(tmp_path):
    data = small_org_data()
    data["issuer"].update(country="US", page_size="a4",
                          fiscal_sponsor={"name": "Commons Fiscal Sponsorship, Inc.", "address": ["1 Main St"],
                                          "tax_id": "EIN 12-3456789"})
    issuer = parse_organization(data, "org.yaml", tmp_path).issuer
    assert (issuer.country, issuer.page_size) == ("US", "a4")
    assert issuer.fiscal_sponsor.name == "Commons Fiscal Sponsorship, Inc."
    assert issuer.model_dump(mode="json")["fiscal_sponsor"]["tax_id"] == "EIN 12-3456789"


@pytest.mark.parametrize("value,expected", [
    ("us", "write it in capitals: 'US'"), ("XX", "not an ISO 3166 two-letter country code"),
    ("EU", "not an ISO 3166"), ("USA", "not an ISO 3166"), (False, "write the country code in quotes"),
])
def test_a_country_must_be_an_iso_code(tmp_path, value, expected):
    data = small_org_data()
    data["issuer"]["country"] = value
    text = problems(data, tmp_path)
    assert "issuer.country" in text and expected in text


def test_norway_written_bare_in_yaml_is_explained(tmp_path):
    data = small_org_data()
    path = tmp_path / "org.yaml"
    path.write_text(yaml.safe_dump(data).replace("issuer:\n", "issuer:\n  country: NO\n", 1))
    with pytest.raises(ConfigError, match='write the country code in quotes, e.g. "NO"'):
        load_organization(path)


def test_page_size_is_letter_or_a4(tmp_path):
    data = small_org_data()
    data["issuer"]["page_size"] = "legal"
    text = problems(data, tmp_path)
    assert "issuer.page_size" in text and "'letter'" in text and "'a4'" in text


def test_one_seller_tax_id_with_a_fiscal_sponsor(tmp_path):
    data = small_org_data()
    data["issuer"].update(tax_id="EIN 1", fiscal_sponsor={"name": "Sponsor", "tax_id": "EIN 2"})
    assert "give its tax id only (fiscal_sponsor.tax_id)" in problems(data, tmp_path)
    data["issuer"]["fiscal_sponsor"] = {"name": "  "}
    assert "issuer.fiscal_sponsor.name" in problems(data, tmp_path)
