"""The pure retention rules: what is frozen, where the horizon goes, which partitions may go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerflow_common.retention import (
    CATCH_ALL_PARTITION,
    MAX_HORIZON_ADVANCE,
    NEIGHBOUR_GUARD,
    PARTITIONS_AHEAD_MONTHS,
    Partition,
    advance_until,
    droppable_partitions,
    is_frozen,
    month_floor,
    months_after,
    next_horizon,
    partition_name,
    partitions_to_add,
    raw_delete_before,
    retention_target,
)

MAX_GAP = timedelta(seconds=60)
HOUR = timedelta(hours=1)
instants = st.datetimes(
    min_value=datetime(2001, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
)


def monthly(first: datetime, months: int) -> list[Partition]:
    """Monthly partitions from ``first``'s month, plus the catch-all."""
    parts = [
        Partition(partition_name(months_after(first, i + 1)), months_after(first, i + 1))
        for i in range(months)
    ]
    return [*parts, Partition(CATCH_ALL_PARTITION, None)]


def test_an_hour_before_the_horizon_is_frozen_and_the_horizon_hour_is_not() -> None:
    horizon = datetime(2025, 2, 7, tzinfo=UTC)
    assert is_frozen(horizon - HOUR, horizon)
    assert not is_frozen(horizon, horizon)
    assert not is_frozen(horizon - HOUR, None)  # no horizon: nothing is frozen
    # A quarter hour is a bucket like an hour.
    assert is_frozen(horizon - timedelta(minutes=15), horizon)


def test_a_naive_time_is_refused_rather_than_guessed() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        is_frozen(datetime(2025, 1, 1), datetime(2025, 2, 1, tzinfo=UTC))


def test_hand_computed_400_days_drop_january_once_the_horizon_passes_its_guard() -> None:
    # 2026-03-15 10:30 minus 400 days is 2025-02-08 10:30; the horizon is that UTC midnight.
    now = datetime(2026, 3, 15, 10, 30, tzinfo=UTC)
    target = retention_target(now, 400)
    assert target == datetime(2025, 2, 8, tzinfo=UTC)
    horizon = next_horizon(None, target, None)
    assert horizon == target
    # Raw readings stay one day before the horizon, for the first hour that is not frozen.
    assert raw_delete_before(target, MAX_GAP) == datetime(2025, 2, 7, tzinfo=UTC)
    parts = monthly(datetime(2024, 12, 1, tzinfo=UTC), 4)  # Dec, Jan, Feb, Mar + pmax
    assert droppable_partitions(parts, horizon, MAX_GAP) == ["p202412", "p202501"]
    # An hour of 20 January not rolled up keeps January (and stops the horizon at its day).
    dirty = datetime(2025, 1, 20, 13, tzinfo=UTC)
    assert next_horizon(None, target, dirty) == datetime(2025, 1, 20, tzinfo=UTC)
    assert droppable_partitions(parts, horizon, MAX_GAP, dirty) == ["p202412"]


def test_the_horizon_never_moves_back() -> None:
    current = datetime(2025, 3, 1, tzinfo=UTC)
    earlier = datetime(2025, 2, 1, tzinfo=UTC)
    assert next_horizon(current, earlier, None) == current
    assert next_horizon(current, datetime(2025, 4, 1, tzinfo=UTC), earlier) == current


def test_partitions_are_added_up_to_three_months_ahead_and_only_once() -> None:
    now = datetime(2026, 11, 29, 18, tzinfo=UTC)
    parts = monthly(datetime(2026, 10, 1, tzinfo=UTC), 2)  # Oct, Nov
    added = partitions_to_add(parts, now)
    # December, January, February each get their own partition (3 ahead of November).
    assert added == [
        datetime(2027, 1, 1, tzinfo=UTC),
        datetime(2027, 2, 1, tzinfo=UTC),
        datetime(2027, 3, 1, tzinfo=UTC),
    ]
    assert [partition_name(b) for b in added] == ["p202612", "p202701", "p202702"]
    complete = [*parts[:-1], *(Partition(partition_name(b), b) for b in added), parts[-1]]
    assert partitions_to_add(complete, now) == []


def test_the_catch_all_is_never_dropped() -> None:
    parts = [Partition(CATCH_ALL_PARTITION, None)]
    assert droppable_partitions(parts, datetime(2090, 1, 1, tzinfo=UTC), MAX_GAP) == []


@settings(deadline=None)
@given(instants, st.integers(min_value=1, max_value=3650))
def test_the_target_is_a_utc_midnight_at_least_the_retention_before_now(
    now: datetime, days: int
) -> None:
    target = retention_target(now, days)
    assert target.time() == datetime.min.time()
    assert now - timedelta(days=days + 1) < target <= now - timedelta(days=days)


@settings(deadline=None)
@given(instants, st.integers(min_value=-600, max_value=600))
def test_month_arithmetic_lands_on_month_starts(ts: datetime, months: int) -> None:
    start = months_after(ts, months)
    assert start == month_floor(start)
    assert months_after(start, -months) == month_floor(ts)


@settings(deadline=None)
@given(
    st.one_of(st.none(), instants),
    instants,
    st.one_of(st.none(), instants),
)
def test_no_hour_not_rolled_up_is_ever_frozen_by_a_move(
    current: datetime | None, target: datetime, dirty: datetime | None
) -> None:
    new = next_horizon(current, target, dirty)
    assert new is not None
    if current is not None:
        assert new >= current  # frozen stays frozen
    moved = current is None or new > current
    if moved and dirty is not None:
        assert not is_frozen(dirty.replace(minute=0, second=0, microsecond=0), new)


@settings(deadline=None)
@given(
    instants,
    st.integers(min_value=0, max_value=40),
    instants,
    st.one_of(st.none(), instants),
    st.integers(min_value=1, max_value=3 * 86_400),
)
def test_a_dropped_partition_holds_only_rows_beyond_the_guard_and_before_any_dirty_hour(
    first: datetime, months: int, horizon: datetime, dirty: datetime | None, gap_s: int
) -> None:
    max_gap = timedelta(seconds=gap_s)
    parts = monthly(first, months)
    dropped = droppable_partitions(parts, horizon, max_gap, dirty)
    uppers = {p.name: p.upper for p in parts}
    assert CATCH_ALL_PARTITION not in dropped
    for name in dropped:
        upper = uppers[name]
        assert upper is not None
        # Every row it can hold (ts < upper) is before the guard, so before the horizon.
        assert upper <= horizon - max(NEIGHBOUR_GUARD, max_gap)
        if dirty is not None:
            assert upper <= dirty
    # Oldest first, and a prefix: nothing newer goes while something older stays.
    assert dropped == [p.name for p in parts[: len(dropped)]]


@settings(deadline=None)
@given(st.lists(instants, max_size=5, unique=True), instants)
def test_added_partitions_leave_no_month_up_to_three_ahead_in_the_catch_all(
    uppers: list[datetime], now: datetime
) -> None:
    existing = [Partition(partition_name(month_floor(u)), month_floor(u)) for u in sorted(uppers)]
    existing = list({p.upper: p for p in existing}.values())
    added = partitions_to_add([*existing, Partition(CATCH_ALL_PARTITION, None)], now)
    bounds = sorted([*(p.upper for p in existing if p.upper is not None), *added])
    assert all(b == month_floor(b) for b in added)
    assert len(set(bounds)) == len(bounds)  # nothing added twice
    if existing:
        assert all(b > max(p.upper for p in existing if p.upper) for b in added)
    # The month PARTITIONS_AHEAD_MONTHS ahead of now ends below the last monthly bound.
    assert bounds[-1] >= months_after(now, PARTITIONS_AHEAD_MONTHS + 1)


def test_a_first_run_on_years_of_data_freezes_at_most_a_quarter() -> None:
    target = datetime(2025, 2, 8, tzinfo=UTC)
    oldest = datetime(2023, 5, 17, 13, 5, tzinfo=UTC)
    # From the oldest reading's day, 92 days: 2023-05-17 + 92 days = 2023-08-17.
    assert advance_until(None, oldest, target) == datetime(2023, 8, 17, tzinfo=UTC)
    assert advance_until(datetime(2025, 1, 1, tzinfo=UTC), oldest, target) == target
    assert advance_until(None, None, target) == target  # no readings: nothing to read


@settings(deadline=None)
@given(st.one_of(st.none(), instants), st.one_of(st.none(), instants), instants)
def test_one_run_never_goes_past_its_target_nor_a_quarter_past_its_start(
    current: datetime | None, oldest: datetime | None, target: datetime
) -> None:
    until = advance_until(current, oldest, target)
    assert until <= target
    start = current if current is not None else oldest
    if start is not None:
        assert until <= start + MAX_HORIZON_ADVANCE
        # It always makes progress while the target is ahead of the start's day.
        if target > start + timedelta(days=1):
            assert until > start - timedelta(days=1)
