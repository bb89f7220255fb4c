"""The local days a baseline or reporting period covers (powerflow_common.savings.DayRange)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from powerflow_common.baselines import BaselineRefused
from powerflow_common.savings import DayRange


def test_a_period_of_local_days_is_cut_at_the_sites_midnights() -> None:
    days = DayRange(date(2025, 7, 1), date(2025, 7, 31))
    assert days.days == 31
    # Seoul is UTC+9: 1 July 00:00 KST is 30 June 15:00 UTC; the end is 1 August's midnight.
    assert days.utc("Asia/Seoul") == (
        datetime(2025, 6, 30, 15, tzinfo=UTC),
        datetime(2025, 7, 31, 15, tzinfo=UTC),
    )


def test_a_reports_exclusive_end_is_the_day_before() -> None:
    assert DayRange.from_exclusive(date(2026, 3, 1), date(2026, 4, 1)) == DayRange(
        date(2026, 3, 1), date(2026, 3, 31)
    )


@pytest.mark.parametrize(
    ("days", "reason"),
    [
        (DayRange(date(2025, 2, 1), date(2025, 1, 1)), "bad_period"),
        (DayRange(date(1, 1, 1), date(1, 1, 2)), "bad_period"),
        (DayRange(date(2020, 1, 1), date(2025, 1, 1)), "period_too_long"),
    ],
)
def test_a_period_out_of_bounds_is_refused(days: DayRange, reason: str) -> None:
    with pytest.raises(BaselineRefused) as refused:
        days.check(max_days=1100)
    assert refused.value.reason == reason
