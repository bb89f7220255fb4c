from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerflow_common.periods import (
    PERIODS,
    Period,
    bucket_start_local,
    iter_periods_utc,
    period_bounds_utc,
    validate_timezone,
)

HOUR = timedelta(hours=1)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_seoul_day_starts_at_15_utc_the_day_before() -> None:
    start, end = period_bounds_utc("day", utc(2024, 5, 1, 16), "Asia/Seoul")

    assert (start, end) == (utc(2024, 5, 1, 15), utc(2024, 5, 2, 15))


def test_instant_before_local_midnight_belongs_to_the_previous_local_day() -> None:
    start, _ = period_bounds_utc("day", utc(2024, 5, 1, 14, 59, 59), "Asia/Seoul")

    assert start == utc(2024, 4, 30, 15)


def test_london_spring_forward_day_has_23_hours() -> None:
    start, end = period_bounds_utc("day", utc(2024, 3, 31, 12), "Europe/London")

    assert (start, end) == (utc(2024, 3, 31, 0), utc(2024, 3, 31, 23))
    assert end - start == timedelta(hours=23)


def test_london_fall_back_day_has_25_hours() -> None:
    start, end = period_bounds_utc("day", utc(2024, 10, 27, 12), "Europe/London")

    assert (start, end) == (utc(2024, 10, 26, 23), utc(2024, 10, 28, 0))
    assert end - start == timedelta(hours=25)


def test_day_whose_midnight_is_skipped_by_dst_starts_at_the_transition() -> None:
    # Havana jumps from 00:00 to 01:00 on 2024-03-10 (05:00 UTC).
    start, end = period_bounds_utc("day", utc(2024, 3, 10, 12), "America/Havana")

    assert start == utc(2024, 3, 10, 5)
    assert end - start == timedelta(hours=23)


def test_hour_period_is_the_utc_hour() -> None:
    assert period_bounds_utc("hour", utc(2024, 5, 1, 10, 59, 59), "Asia/Seoul") == (
        utc(2024, 5, 1, 10),
        utc(2024, 5, 1, 11),
    )


def test_weeks_start_on_monday() -> None:
    # 2024-10-27 is a Sunday in Seoul; its week began on Monday 2024-10-21 local.
    start, end = period_bounds_utc("week", utc(2024, 10, 27, 12), "Asia/Seoul")

    assert start.astimezone(ZoneInfo("Asia/Seoul")) == datetime(
        2024, 10, 21, tzinfo=ZoneInfo("Asia/Seoul")
    )
    assert start.astimezone(ZoneInfo("Asia/Seoul")).weekday() == 0
    assert end - start == timedelta(days=7)


def test_week_containing_a_dst_change_has_167_hours() -> None:
    start, end = period_bounds_utc("week", utc(2024, 3, 31, 12), "Europe/London")

    assert end - start == timedelta(hours=167)


def test_december_month_ends_at_local_new_year() -> None:
    start, end = period_bounds_utc("month", utc(2024, 12, 31, 16), "Asia/Seoul")

    # 16:00 UTC on Dec 31 is already January 1st in Seoul.
    assert (start, end) == (utc(2024, 12, 31, 15), utc(2025, 1, 31, 15))


def test_year_is_cut_at_local_new_year() -> None:
    start, end = period_bounds_utc("year", utc(2024, 6, 1), "Europe/London")

    assert (start, end) == (utc(2024, 1, 1), utc(2025, 1, 1))


def test_iter_periods_yields_contiguous_days_covering_the_range() -> None:
    days = list(
        iter_periods_utc("day", utc(2024, 3, 30, 12), utc(2024, 3, 31, 23), "Europe/London")
    )

    assert days == [
        (utc(2024, 3, 30, 0), utc(2024, 3, 31, 0)),
        (utc(2024, 3, 31, 0), utc(2024, 3, 31, 23)),
    ]


def test_iter_periods_yields_nothing_for_an_empty_range() -> None:
    assert list(iter_periods_utc("day", utc(2024, 1, 2), utc(2024, 1, 2), "UTC")) == []


def test_months_of_a_year_have_the_right_lengths_across_dst() -> None:
    months = list(iter_periods_utc("month", utc(2024, 1, 1), utc(2025, 1, 1), "Europe/London"))

    assert len(months) == 12
    assert months[2][1] - months[2][0] == timedelta(days=31, hours=-1)  # March loses an hour
    assert months[9][1] - months[9][0] == timedelta(days=31, hours=1)  # October gains one
    assert months[1][1] - months[1][0] == timedelta(days=29)  # leap February


def test_all_hourly_buckets_of_a_25_hour_day_map_to_the_same_local_day() -> None:
    start, end = period_bounds_utc("day", utc(2024, 10, 27, 12), "Europe/London")
    hours = [start + i * HOUR for i in range((end - start) // HOUR)]

    keys = {bucket_start_local(h, "day", "Europe/London") for h in hours}

    assert len(hours) == 25
    assert keys == {datetime(2024, 10, 27, tzinfo=timezone(HOUR))}  # BST at midnight
    assert bucket_start_local(end, "day", "Europe/London") == datetime(2024, 10, 28, tzinfo=UTC)


def test_the_two_one_oclock_hours_of_a_fall_back_night_are_distinct_hour_keys() -> None:
    first = bucket_start_local(utc(2024, 10, 27, 0), "hour", "Europe/London")
    second = bucket_start_local(utc(2024, 10, 27, 1), "hour", "Europe/London")

    assert first.hour == second.hour == 1  # both read 01:00 on the wall clock
    assert first != second
    assert len({first, second}) == 2


def test_bucket_start_local_is_local_wall_time_with_its_utc_offset() -> None:
    key = bucket_start_local(utc(2024, 12, 31, 15), "year", "Asia/Seoul")

    assert key.utcoffset() == timedelta(hours=9)
    assert (key.year, key.month, key.day, key.hour) == (2025, 1, 1, 0)
    assert key == utc(2024, 12, 31, 15)


def test_bucket_start_local_rejects_a_time_that_is_not_an_hour_start() -> None:
    with pytest.raises(ValueError, match="UTC hour"):
        bucket_start_local(utc(2024, 1, 1, 10, 30), "day", "UTC")


def test_whole_hour_timezones_are_accepted() -> None:
    for tz in ("Asia/Seoul", "Europe/London", "America/New_York", "UTC", "Etc/GMT-9"):
        assert validate_timezone(tz) == tz


def test_half_hour_timezone_is_rejected_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match=r"not whole hours \(\+05:30\)"):
        validate_timezone("Asia/Kolkata")


def test_zone_with_half_hour_summer_time_is_rejected() -> None:
    with pytest.raises(ValueError, match="not whole hours"):
        validate_timezone("Australia/Lord_Howe")


def test_zone_with_old_half_hour_history_but_whole_hours_now_is_accepted() -> None:
    # Seoul used +08:30 in the 1950s.
    assert validate_timezone("Asia/Seoul") == "Asia/Seoul"


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "", "../etc/passwd", "asia/seoul "])
def test_unknown_timezone_is_rejected(tz: str) -> None:
    with pytest.raises(ValueError, match="timezone"):
        validate_timezone(tz)


def test_period_functions_reject_naive_datetimes_and_unknown_periods() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        period_bounds_utc("day", datetime(2024, 1, 1), "UTC")
    with pytest.raises(ValueError, match="unknown period"):
        period_bounds_utc("fortnight", utc(2024, 1, 1), "UTC")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="whole hours"):
        period_bounds_utc("day", utc(2024, 1, 1), "Asia/Kolkata")


@settings(deadline=None)
@given(
    period=st.sampled_from(PERIODS),
    tz=st.sampled_from(["Asia/Seoul", "Europe/London", "America/New_York", "Australia/Sydney"]),
    instant=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2036, 12, 1), timezones=st.just(UTC)
    ),
    span_hours=st.integers(min_value=1, max_value=24 * 100),
)
def test_periods_contain_their_instant_are_contiguous_and_hour_aligned(
    period: Period, tz: str, instant: datetime, span_hours: int
) -> None:
    start, end = period_bounds_utc(period, instant, tz)
    assert start <= instant < end

    bounds = list(iter_periods_utc(period, instant, instant + span_hours * HOUR, tz))
    assert bounds[0] == (start, end)
    assert bounds[-1][1] >= instant + span_hours * HOUR
    for (_, prev_end), (next_start, _) in pairwise(bounds):
        assert prev_end == next_start
    for a, b in bounds:
        assert a < b
        assert a.minute == a.second == a.microsecond == 0
        hour_bucket = a.replace(minute=0, second=0, microsecond=0)
        assert bucket_start_local(hour_bucket, period, tz) == a
        assert bucket_start_local(b - HOUR, period, tz) == a


def test_offset_segments_follow_daylight_saving_changes() -> None:
    from powerflow_common.periods import utc_offset_segments

    start = datetime(2025, 1, 1, tzinfo=UTC)
    end = datetime(2026, 1, 1, tzinfo=UTC)
    assert utc_offset_segments("Asia/Seoul", start, end) == [(start, 540)]
    assert utc_offset_segments("Europe/Berlin", start, end) == [
        (start, 60),
        (datetime(2025, 3, 30, 1, tzinfo=UTC), 120),
        (datetime(2025, 10, 26, 1, tzinfo=UTC), 60),
    ]


def test_offset_segments_from_an_odd_start_still_change_on_the_hour() -> None:
    from powerflow_common.periods import utc_offset_segments

    start = datetime(2025, 3, 29, 7, 13, 27, tzinfo=UTC)
    segments = utc_offset_segments("Europe/Berlin", start, start + timedelta(days=3))
    assert segments == [(start, 60), (datetime(2025, 3, 30, 1, tzinfo=UTC), 120)]
