"""Billing months ("YYYY-MM") and ranges of them."""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

_MONTH = re.compile(r"^([0-9]{4})-([0-9]{2})$")
# Python dates end with 9999-12-31. Every month needs a next month, an issue
# date (the first day of the next month) and a due date up to 365 days after
# that: December 9997 is the last month for which all three exist.
FIRST_YEAR, LAST_YEAR = 1, 9997


@dataclass(frozen=True, order=True, slots=True)
class Month:
    """A calendar month; the billing period is [start, end) in UTC."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> "Month":
        """A month written YYYY-MM (2022-01), year 1 to 9998, month 01 to 12; ValueError otherwise."""
        m = _MONTH.match(str(text).strip())
        if not m:
            raise ValueError(f"not a month in the form YYYY-MM (e.g. 2022-01): {text!r}")
        year, month = int(m.group(1)), int(m.group(2))
        if not 1 <= month <= 12:
            raise ValueError(f"not a month: {text!r} (the month is 01 to 12)")
        if not FIRST_YEAR <= year <= LAST_YEAR:
            raise ValueError(f"not a month: {text!r} (the year is {FIRST_YEAR:04d} to {LAST_YEAR})")
        return cls(year, month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def start(self) -> dt.date:
        return dt.date(self.year, self.month, 1)

    @property
    def end(self) -> dt.date:
        """First day of the next month (exclusive end)."""
        return self.next().start

    def previous(self) -> "Month":
        return Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    def next(self) -> "Month":
        return Month(self.year + (self.month == 12), self.month % 12 + 1)

    def label(self) -> str:
        return self.start.strftime("%B %Y")


def month_range(first: Month, last: Month) -> list[Month]:
    """All months from `first` to `last`, both included."""
    if last < first:
        raise ValueError(f"range ends before it starts: {first} to {last}")
    months, current = [], first
    while current <= last:
        months.append(current)
        current = current.next()
    return months
