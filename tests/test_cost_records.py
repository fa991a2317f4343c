"""records_to_table: the gate every live connector's rows pass through."""
import datetime as dt
from decimal import Decimal as D

import pytest

from billing.errors import SourceError
from billing.sources.base import records_to_table


def record(**overrides):
    ts = dt.datetime(2022, 1, 1, tzinfo=dt.timezone.utc)
    return {"ProviderName": "AWS", "BillingAccountId": "999900000000", "SubAccountId": "111100000000",
            "BillingPeriodStart": ts, "ChargePeriodStart": ts, "ChargeCategory": "Usage", "ServiceName": "EC2",
            "ServiceCategory": "Compute", "BilledCost": D("1.01"), "BillingCurrency": "USD", **overrides}


def test_a_valid_record_becomes_a_row():
    table = records_to_table([record(), record(BillingCurrency="EUR")], "cluster 'x'")
    assert table.column("BillingCurrency").to_pylist() == ["USD", "EUR"]
    assert table.column("BilledCost").to_pylist() == [D("1.01"), D("1.01")]


@pytest.mark.parametrize("code", ["XYZ", "XXX", "usd", "US$", None])
def test_the_currency_must_be_a_real_iso_4217_code(code):
    with pytest.raises(SourceError) as err:
        records_to_table([record(), record(BillingCurrency=code)], "cluster 'x'")
    assert str(err.value) == f"cluster 'x': row 1: field 'BillingCurrency' is not an ISO 4217 currency code: {code!r}"
