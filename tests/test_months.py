import datetime as dt

import pytest

from billing.months import LAST_YEAR, Month


@pytest.mark.parametrize("text", ["2022-13", "2022-00", "0000-01", "2022-1", "22-01", "2022/01", "9998-12",
                                  "9999-12", "２０２２-01", ""])
def test_impossible_months_are_refused(text):
    with pytest.raises(ValueError, match="month"):
        Month.parse(text)


def test_month_messages_say_what_is_accepted():
    with pytest.raises(ValueError, match=r"not a month: '2022-13' \(the month is 01 to 12\)"):
        Month.parse("2022-13")
    with pytest.raises(ValueError, match=r"not a month: '0000-01' \(the year is 0001 to 9997\)"):
        Month.parse("0000-01")
    with pytest.raises(ValueError, match=r"not a month in the form YYYY-MM \(e.g. 2022-01\): '2022-1'"):
        Month.parse("2022-1")


def test_first_and_last_months_have_issue_and_due_dates():
    first, last = Month.parse("0001-01"), Month.parse(f"{LAST_YEAR}-12")
    assert str(first) == "0001-01" and first.end == dt.date(1, 2, 1)
    assert last.end + dt.timedelta(days=365) == dt.date(LAST_YEAR + 2, 1, 1)
