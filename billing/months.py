"""Billing months ("YYYY-MM") and ranges of them."""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True, order=True, slots=True)
class Month:
    """A calendar month; the billing period is [start, end) in UTC."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> "Month":
        m = _MONTH.match(str(text).strip())
        if not m or not 1 <= int(m.group(2)) <= 12:
            raise ValueError(f"not a month in the form YYYY-MM: {text!r}")
        return cls(int(m.group(1)), int(m.group(2)))

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def start(self) -> dt.date:
        return dt.date(self.year, self.month, 1)

    @property
    def end(self) -> dt.date:
        """First day of the next month (exclusive end)."""
        return self.next().start

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
