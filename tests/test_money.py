from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.money import Money, allocate, round_money, to_decimal


def test_to_decimal_refuses_floats_and_garbage():
    assert to_decimal("1_000.10") == D("1000.10")
    with pytest.raises(ValueError, match="float"):
        to_decimal(0.1)
    with pytest.raises(ValueError, match="not a decimal"):
        to_decimal("1,000")
    with pytest.raises(ValueError, match="finite"):
        to_decimal("NaN")


def test_rounding_is_half_up_and_symmetric_with_currency_digits():
    assert round_money(D("2.345"), "USD") == D("2.35")
    assert round_money(D("-2.345"), "USD") == D("-2.35")
    assert round_money(D("2.5"), "JPY") == D("3")
    assert round_money(D("1.0005"), "KWD") == D("1.001")


def test_money_refuses_mixed_currencies():
    assert Money(D("1.10"), "USD") + Money(D("2"), "USD") == Money(D("3.10"), "USD")
    with pytest.raises(ValueError, match="cannot combine"):
        Money(D("1"), "USD") + Money(D("1"), "EUR")


def test_allocate_largest_remainder():
    assert allocate(D("100.00"), [D(1), D(1), D(1)]) == [D("33.34"), D("33.33"), D("33.33")]
    assert allocate(D("-0.05"), [D(1), D(1)]) == [D("-0.03"), D("-0.02")]
    assert allocate(D("10.000000000000000001"), [D(1), D(3)]) == [D("2.500000000000000000"), D("7.500000000000000001")]
    with pytest.raises(ValueError, match="all zero"):
        allocate(D("1.00"), [D(0), D(0)])


amounts = st.decimals(min_value=D("-1000000"), max_value=D("1000000"), places=6, allow_nan=False)
weights = st.lists(st.decimals(min_value=D(0), max_value=D("100000"), places=3), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(total=amounts, ws=weights)
def test_allocate_parts_always_add_up_and_stay_close(total, ws):
    if sum(ws) == 0:
        ws = ws[:-1] + [D(1)]
    parts = allocate(total, ws)
    assert sum(parts) == total
    quantum = D(1).scaleb(min(total.as_tuple().exponent, -2))
    for part, w in zip(parts, ws):
        assert abs(part - total * w / sum(ws)) < quantum
        assert part % quantum == 0
