"""Which month an unattended run invoices: the last one closed in the organization's time zone."""
import datetime as dt

import pytest

from billing.config import parse_organization, slug
from billing.errors import ConfigError
from billing.months import Month
from helpers import small_org_data


def org(tmp_path, **overrides):
    return parse_organization(small_org_data(**overrides), "org.yaml", tmp_path)


@pytest.mark.parametrize("today, month", [
    (dt.date(2026, 11, 29), Month(2026, 10)),   # November has not ended
    (dt.date(2026, 12, 5), Month(2026, 10)),    # November ended, but closes on December 6
    (dt.date(2026, 12, 6), Month(2026, 11)),
    (dt.date(2027, 1, 6), Month(2026, 12)),     # across the year
    (dt.date(2027, 1, 5), Month(2026, 11)),
])
def test_the_last_closed_month(tmp_path, today, month):
    assert org(tmp_path).last_closed_month(today) == month


def test_a_source_that_restates_longer_delays_the_close(tmp_path):
    data = small_org_data()
    data["clusters"][0]["source"]["close_after_days"] = 12
    o = parse_organization(data, "org.yaml", tmp_path)
    assert o.closing_day(Month(2026, 11)) == dt.date(2026, 12, 13)
    assert o.last_closed_month(dt.date(2026, 12, 12)) == Month(2026, 10)


def test_the_organization_id_defaults_to_a_slug_of_its_name(tmp_path):
    assert org(tmp_path).org_id == "test-org"
    assert org(tmp_path, id="ohc").org_id == "ohc"
    assert slug("Université & Ciência Aberta — 2026!") == "universite-ciencia-aberta-2026"
    with pytest.raises(ConfigError, match="id"):
        org(tmp_path, id="Not An Id")


def test_the_time_zone_decides_today(tmp_path):
    assert org(tmp_path, timezone="Pacific/Kiritimati").today() >= org(tmp_path, timezone="Etc/GMT+12").today()
    with pytest.raises(ConfigError, match="not a time zone"):
        org(tmp_path, timezone="Mars/Olympus")
