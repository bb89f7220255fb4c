"""Pure rules of raw-reading retention: the frozen horizon and which partitions may go.

The **raw horizon** is the first instant whose raw readings are still guaranteed to be kept.
An hour (of ``hourly_stats``, or a 15-minute bucket of any finer table) that starts before it
is **frozen**: its stored figures are final, because the raw readings they came from may be
gone. Nothing recomputes a frozen bucket from raw readings or deletes it for being empty; a
factor-set change recomputes its CO2 from the stored kWh; a late reading for it is refused
(``beyond_retention``). The horizon only moves forward, and only over hours that are rolled up.

Raw readings are deleted a guard *before* the horizon, not at it: the first hour that is not
frozen still needs its neighbours when it is recomputed (the power sample just before it, up
to ``max_gap`` back; a counter's previous value), so they stay.

Everything here is pure: no I/O, no settings. The operator's view is in docs/operations.md,
"Retention and partitions".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = [
    "CATCH_ALL_PARTITION",
    "HORIZON_STEP",
    "MAX_HORIZON_ADVANCE",
    "NEIGHBOUR_GUARD",
    "PARTITIONS_AHEAD_MONTHS",
    "Partition",
    "advance_until",
    "droppable_partitions",
    "is_frozen",
    "month_floor",
    "months_after",
    "next_horizon",
    "partition_name",
    "partitions_to_add",
    "raw_delete_before",
    "retention_target",
]

# The horizon moves by whole UTC days: a job run every few minutes does not nudge it hour by
# hour, and "raw readings are kept for N days" reads as days in the logs and the docs.
HORIZON_STEP = timedelta(days=1)
# Raw readings kept before the horizon, so the first hour that is not frozen finds the
# neighbours its recompute reads (power within max_gap; a counter's previous value, which a
# device reporting at least daily always has). Longer max_gap settings widen it.
NEIGHBOUR_GUARD = timedelta(days=1)
# Monthly partitions created ahead of time, so a month's rows never land in the catch-all:
# three months survive a quarter without the job (an outage, a forgotten cron).
PARTITIONS_AHEAD_MONTHS = 3
# One run freezes at most a quarter: the rolled-up check reads every raw row it is about to
# freeze, so a first run on years of data catches up over a few runs, each of bounded length,
# instead of reading everything in one (a year of 1,000 devices at 5 s is 6.3 billion rows).
MAX_HORIZON_ADVANCE = timedelta(days=92)
# The last partition, ``VALUES LESS THAN (MAXVALUE)``: whatever no monthly partition holds
# (a clock years ahead) lands here, so no insert ever fails for want of a partition.
CATCH_ALL_PARTITION = "pmax"


@dataclass(frozen=True, slots=True)
class Partition:
    """One RANGE partition of ``readings``: rows with ``ts`` below ``upper`` (None: MAXVALUE)."""

    name: str
    upper: datetime | None


def _utc(ts: datetime, name: str) -> datetime:
    if ts.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware (UTC)")
    return ts.astimezone(UTC)


def is_frozen(bucket_start: datetime, horizon: datetime | None) -> bool:
    """True when a bucket (an hour, a quarter hour) starting at ``bucket_start`` is frozen.

    No horizon (retention off, or never run): nothing is frozen.
    """
    if horizon is None:
        return False
    return _utc(bucket_start, "bucket_start") < _utc(horizon, "horizon")


def _day_floor(ts: datetime) -> datetime:
    return ts.replace(hour=0, minute=0, second=0, microsecond=0)


def retention_target(now: datetime, raw_retention_days: int) -> datetime:
    """Where the horizon should be: ``raw_retention_days`` before ``now``, at a UTC midnight."""
    if raw_retention_days < 1:
        raise ValueError("raw_retention_days must be at least 1")
    return _day_floor(_utc(now, "now") - timedelta(days=raw_retention_days))


def advance_until(
    current: datetime | None, oldest_reading: datetime | None, target: datetime
) -> datetime:
    """How far one run may move the horizon: ``target``, at most ``MAX_HORIZON_ADVANCE`` past
    where the horizon stands (or, before the first move, past the day of the oldest reading)."""
    start = current if current is not None else oldest_reading
    target = _utc(target, "target")
    if start is None:
        return target
    return min(target, _day_floor(_utc(start, "start")) + MAX_HORIZON_ADVANCE)


def next_horizon(
    current: datetime | None, target: datetime, first_not_rolled_up: datetime | None
) -> datetime | None:
    """The horizon after this run: towards ``target``, but never past an hour not rolled up.

    ``first_not_rolled_up`` is the earliest hour in [current, target) with readings and no
    up-to-date stats row; the horizon stops at its day, so it and its neighbours stay
    recomputable. The horizon never moves back (frozen stays frozen). None: nothing frozen yet.
    """
    candidate = _utc(target, "target")
    if first_not_rolled_up is not None:
        candidate = min(candidate, _day_floor(_utc(first_not_rolled_up, "first_not_rolled_up")))
    if current is None:
        return candidate
    return max(_utc(current, "current"), candidate)


def raw_delete_before(horizon: datetime, max_gap: timedelta) -> datetime:
    """Raw readings before this instant may be deleted: the horizon minus the neighbour guard."""
    return _utc(horizon, "horizon") - max(NEIGHBOUR_GUARD, max_gap)


def month_floor(ts: datetime) -> datetime:
    """First instant (UTC) of the calendar month containing ``ts``."""
    return _day_floor(_utc(ts, "ts")).replace(day=1)


def months_after(month_start: datetime, months: int) -> datetime:
    """The month start ``months`` calendar months after ``month_start`` (negative: before)."""
    start = month_floor(month_start)
    index = start.year * 12 + start.month - 1 + months
    return start.replace(year=index // 12, month=index % 12 + 1)


def partition_name(upper: datetime) -> str:
    """``pYYYYMM``, the month a monthly partition ending at ``upper`` holds."""
    return "p" + months_after(upper, -1).strftime("%Y%m")


def partitions_to_add(
    partitions: Sequence[Partition], now: datetime, ahead_months: int = PARTITIONS_AHEAD_MONTHS
) -> list[datetime]:
    """Upper bounds of the monthly partitions to split off the catch-all, oldest first.

    Enough that the month of ``now`` and the ``ahead_months`` after it each have their own
    partition; months already there are not added again, and none is added below the highest
    monthly bound (a RANGE partition can only be split off the top, the catch-all).
    """
    bounds = [p.upper for p in partitions if p.upper is not None]
    last = max(bounds) if bounds else month_floor(now)
    wanted = months_after(month_floor(now), ahead_months + 1)
    out: list[datetime] = []
    bound = months_after(last, 1)
    while bound <= wanted:
        out.append(bound)
        bound = months_after(bound, 1)
    return out


def droppable_partitions(
    partitions: Iterable[Partition],
    horizon: datetime | None,
    max_gap: timedelta,
    first_not_rolled_up: datetime | None = None,
) -> list[str]:
    """Names of the partitions that hold only raw readings that may go, oldest first.

    A partition may be dropped when every row it can hold is before ``raw_delete_before``
    (its upper bound, exclusive, is at or before it) and before the first hour not rolled up.
    The catch-all never is.
    """
    if horizon is None:
        return []
    limit = raw_delete_before(horizon, max_gap)
    if first_not_rolled_up is not None:
        limit = min(limit, _utc(first_not_rolled_up, "first_not_rolled_up"))
    monthly = [(p.upper, p.name) for p in partitions if p.upper is not None]
    return [name for upper, name in sorted(monthly) if upper <= limit]
