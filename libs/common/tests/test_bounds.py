"""Bounds of outside values: times and days in range, and a clear error naming the value."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerflow_common.bounds import (
    EARLIEST_DATE,
    EARLIEST_TIME,
    LATEST_DATE,
    LATEST_TIME,
    OutOfBounds,
    date_in_bounds,
    utc_in_bounds,
)

# Any offset a datetime may carry: strictly within a day either way.
offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


def test_a_time_in_range_comes_back_as_utc_and_a_naive_one_is_taken_as_utc() -> None:
    seoul = timezone(timedelta(hours=9))
    # Hand-computed: 2026-03-01 09:00 at +09:00 is midnight UTC.
    assert utc_in_bounds("start", datetime(2026, 3, 1, 9, tzinfo=seoul)) == datetime(
        2026, 3, 1, tzinfo=UTC
    )
    assert utc_in_bounds("start", datetime(2026, 3, 1)) == datetime(2026, 3, 1, tzinfo=UTC)


def test_year_1_ahead_of_utc_and_year_9999_behind_it_are_out_of_bounds_not_overflow() -> None:
    with pytest.raises(OutOfBounds) as year_1:
        utc_in_bounds("start", datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))))
    assert year_1.value.name == "start"
    assert "1970-01-01T00:00:00Z" in str(year_1.value)
    with pytest.raises(OutOfBounds, match=r"^end: 9999-12-31T23:00:00-05:00 is out of range"):
        utc_in_bounds("end", datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))))


def test_the_earliest_time_is_in_bounds_and_the_latest_is_not() -> None:
    assert utc_in_bounds("t", EARLIEST_TIME) == EARLIEST_TIME
    with pytest.raises(OutOfBounds):
        utc_in_bounds("t", LATEST_TIME)
    with pytest.raises(OutOfBounds):
        utc_in_bounds("t", EARLIEST_TIME - timedelta(microseconds=1))


def test_days_outside_the_range_are_out_of_bounds() -> None:
    assert date_in_bounds("period_start", date(2026, 1, 1)) == date(2026, 1, 1)
    assert date_in_bounds("period_start", EARLIEST_DATE) == EARLIEST_DATE
    for day in (date(1, 1, 1), date(1969, 12, 31), LATEST_DATE, date(9999, 12, 31)):
        with pytest.raises(OutOfBounds, match=r"^period_start: "):
            date_in_bounds("period_start", day)


@settings(deadline=None)
@given(st.datetimes(timezones=st.none() | offsets))
def test_any_datetime_is_either_utc_in_range_or_out_of_bounds_never_another_error(
    ts: datetime,
) -> None:
    try:
        utc = utc_in_bounds("ts", ts)
    except OutOfBounds as exc:
        assert exc.name == "ts"
    else:
        assert utc.tzinfo is UTC
        assert EARLIEST_TIME <= utc < LATEST_TIME
        # A bounded time survives a day and an offset of arithmetic either way.
        assert utc - timedelta(days=2) < utc + timedelta(days=2)
        assert utc == (ts if ts.tzinfo else ts.replace(tzinfo=UTC))


@settings(deadline=None)
@given(st.dates())
def test_any_day_is_in_range_exactly_when_between_the_bounds(day: date) -> None:
    try:
        assert date_in_bounds("day", day) == day
    except OutOfBounds:
        assert not EARLIEST_DATE <= day < LATEST_DATE
    else:
        assert EARLIEST_DATE <= day < LATEST_DATE
