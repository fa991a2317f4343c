"""Exact money: the one place that builds Decimals and rounds them.

Amounts are `decimal.Decimal` from input to PDF, never float. Exact values
are kept through every computation; an amount is rounded exactly once, when a
charge becomes an invoice line, by the rule named in `ROUNDING_RULE`.
"""
from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Sequence

from babel.numbers import format_currency, format_decimal, get_currency_precision, is_currency

# Half-up (ties away from zero), as most invoicing systems do. Symmetric:
# round(-x) == -round(x), so a subsidy and its funder line always match.
ROUNDING_RULE = "half-up per invoice line"
ROUNDING = ROUND_HALF_UP

# Wide enough for any bill; traps turn silent precision loss into errors.
CONTEXT = decimal.Context(prec=60, rounding=ROUNDING, traps=[InvalidOperation, decimal.Overflow])
decimal.setcontext(CONTEXT)

ZERO = Decimal(0)


def to_decimal(value: object) -> Decimal:
    """Build a Decimal from a string, int or Decimal; floats are refused.

    Raises ValueError (with the offending value) for anything that is not a
    finite number.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError(f"money must not be a float or bool: {value!r}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip().replace("_", ""))
        except InvalidOperation:
            raise ValueError(f"not a decimal number: {value!r}") from None
    else:
        raise ValueError(f"not a decimal number: {value!r}")
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


# ISO 4217 codes that are not money one can invoice in: precious metals, bond-market units, SDR, test, none.
NON_MONETARY_CODES = frozenset({"XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS",
                                "XUA", "XXX"})


def is_iso_currency(code: object) -> bool:
    """A real ISO 4217 currency that babel knows and can format (USD, EUR, JPY), not XYZ, usd or XXX."""
    return (isinstance(code, str) and len(code) == 3 and code.isascii() and code.isalpha() and code.isupper()
            and code not in NON_MONETARY_CODES and is_currency(code))


def currency_quantum(currency: str) -> Decimal:
    """The smallest unit of a currency as a Decimal: 0.01 for USD, 1 for JPY."""
    return Decimal(1).scaleb(-get_currency_precision(currency))


# Documents are written in US English for now: one place to change it.
LOCALE = "en_US"


def format_money(amount: Decimal, currency: str, locale: str = LOCALE) -> str:
    """An amount as a document prints it: $3,000.00, €12.50, ¥1,200, with the currency's own decimals."""
    return format_currency(amount, currency, locale=locale)


def money_with_code(amount: Decimal, currency: str) -> str:
    """3,577.85 USD: the currency's code, not its symbol, for text that may hold several currencies (messages,
    artifacts)."""
    return format_currency(amount, currency, format="#,##0.00 \u00a4\u00a4", locale=LOCALE)


def format_amount(amount: Decimal, currency: str, locale: str = LOCALE) -> str:
    """An amount without its currency sign, for tables headed by the currency: 3,000.00, 1,200 (JPY)."""
    return format_currency(amount, currency, format="#,##0.00;-#,##0.00", currency_digits=True, locale=locale)


def format_percent(value: Decimal, locale: str = LOCALE) -> str:
    """A percentage as people write it: 50%, 12.5% (exactly, without a space before the sign)."""
    return f"{format_decimal(value.normalize(), locale=locale, decimal_quantization=False)}%"


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Round an exact amount to the currency's minor unit by ROUNDING_RULE."""
    return amount.quantize(currency_quantum(currency), rounding=ROUNDING)


@dataclass(frozen=True, slots=True)
class Money:
    """An immutable (amount, currency) pair; adding two currencies raises."""

    amount: Decimal
    currency: str

    def __add__(self, other: "Money") -> "Money":
        self._same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: "Money") -> "Money":
        self._same_currency(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> "Money":
        return Money(-self.amount, self.currency)

    def _same_currency(self, other: "Money") -> None:
        if not isinstance(other, Money) or other.currency != self.currency:
            raise ValueError(f"cannot combine {self.currency} with {getattr(other, 'currency', other)!r}")

    def rounded(self) -> "Money":
        return Money(round_money(self.amount, self.currency), self.currency)


def allocate(total: Decimal, weights: Sequence[Decimal], quantum: Decimal | None = None) -> list[Decimal]:
    """Split `total` in proportion to `weights` so the parts add up to it exactly.

    Largest-remainder method on multiples of `quantum` (by default the finer
    of a cent and the total's own last digit). Ties in the remainder go to
    the earlier part, so the result is deterministic. All weights zero, or
    no weights, is the caller's decision (see `attribution`): it raises here.
    """
    if not weights:
        raise ValueError("cannot allocate among zero parts")
    if any(w < 0 for w in weights):
        raise ValueError(f"weights must not be negative: {list(weights)}")
    weight_sum = sum(weights, ZERO)
    if weight_sum == 0:
        raise ValueError("cannot allocate by weights that are all zero")
    if quantum is None:
        quantum = Decimal(1).scaleb(min(total.as_tuple().exponent, -2))
    units_total = total / quantum
    if units_total != units_total.to_integral_value():
        raise ValueError(f"total {total} is not a multiple of {quantum}")
    units_total = int(units_total)
    sign = -1 if units_total < 0 else 1
    units_abs = abs(units_total)
    shares = [units_abs * w / weight_sum for w in weights]
    floors = [int(s) for s in shares]  # shares are >= 0, int() floors them
    remainder = units_abs - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-(shares[i] - floors[i]), i))
    for i in order[:remainder]:
        floors[i] += 1
    return [sign * units * quantum for units in floors]
