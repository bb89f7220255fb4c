"""Calendar periods (hour, day, week, month, year) in a site's timezone, as UTC bounds.

Days, weeks, months and years are cut at local midnight in the site's IANA timezone. Only
zones with whole-hour UTC offsets are accepted, because longer periods are assembled from
hourly UTC buckets: with a +05:30 zone, local midnight would fall inside a UTC hour.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "PERIODS",
    "Period",
    "bucket_start_local",
    "iter_periods_utc",
    "period_bounds_utc",
    "validate_timezone",
]

Period = Literal["hour", "day", "week", "month", "year"]
PERIODS: tuple[Period, ...] = get_args(Period)

# "Recent years": historical oddities (e.g. Seoul at +08:30 in the 1950s, local mean time
# before ~1900) must not disqualify a zone that has used whole hours for decades.
_CHECK_FROM_YEAR = 2000
_CHECK_TO_YEAR = 2037


def validate_timezone(tz: str) -> str:
    """Return ``tz`` if it is a known IANA zone with whole-hour offsets, else raise ValueError."""
    return _validated_zone(tz)[0]


def period_bounds_utc(period: Period, containing: datetime, tz: str) -> tuple[datetime, datetime]:
    """UTC [start, end) of the ``period`` in zone ``tz`` that contains the instant ``containing``.

    Weeks start on Monday (ISO 8601).
    """
    zone = _zone(tz)
    _check_period(period)
    instant = _require_aware(containing, "containing").astimezone(UTC)
    if period == "hour":
        start = instant.replace(minute=0, second=0, microsecond=0)
        return start, start + timedelta(hours=1)

    local_day = instant.astimezone(zone).date()
    first: date
    following: date
    if period == "day":
        first = local_day
        following = first + timedelta(days=1)
    elif period == "week":
        first = local_day - timedelta(days=local_day.weekday())
        following = first + timedelta(days=7)
    elif period == "month":
        first = local_day.replace(day=1)
        following = (
            first.replace(year=first.year + 1, month=1)
            if first.month == 12
            else first.replace(month=first.month + 1)
        )
    else:
        first = local_day.replace(month=1, day=1)
        following = first.replace(year=first.year + 1)
    return _local_midnight_utc(first, zone), _local_midnight_utc(following, zone)


def iter_periods_utc(
    period: Period, start: datetime, end: datetime, tz: str
) -> Iterator[tuple[datetime, datetime]]:
    """Consecutive UTC bounds of the periods overlapping [start, end), in order.

    The first period is the one containing ``start``; nothing is yielded when end <= start.
    """
    _require_aware(start, "start")
    _require_aware(end, "end")
    end_utc = end.astimezone(UTC)
    bounds = period_bounds_utc(period, start, tz)
    while bounds[0] < end_utc:
        yield bounds
        bounds = period_bounds_utc(period, bounds[1], tz)


def bucket_start_local(hour_start_utc: datetime, period: Period, tz: str) -> datetime:
    """Local start of the ``period`` in ``tz`` that an hourly UTC bucket belongs to.

    A grouping key for rolling hourly stats up; its tzinfo is the fixed UTC offset then in force.
    """
    hour = _require_aware(hour_start_utc, "hour_start_utc").astimezone(UTC)
    if hour != hour.replace(minute=0, second=0, microsecond=0):
        raise ValueError(f"hour_start_utc must be on a UTC hour, got {hour_start_utc.isoformat()}")
    start_utc, _ = period_bounds_utc(period, hour, tz)
    # A fixed offset rather than the ZoneInfo: datetimes sharing a ZoneInfo compare by wall
    # time and ignore ``fold``, so the two 01:00s of a fall-back night would become one key.
    offset = start_utc.astimezone(_zone(tz)).utcoffset()
    assert offset is not None  # a ZoneInfo always knows the offset of an aware instant
    return start_utc.astimezone(timezone(offset))


def utc_offset_segments(tz: str, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """The zone's UTC offset over [start, end) as (from, offset in minutes) pieces, in order.

    Lets a database cut local periods with plain arithmetic: a zone changes its offset only
    a few times a year, always on a UTC hour for the whole-hour zones we accept.
    """
    zone = _zone(tz)
    start_utc = _require_aware(start, "start").astimezone(UTC)
    end_utc = _require_aware(end, "end").astimezone(UTC)

    def minutes(at: datetime) -> int:
        offset = at.astimezone(zone).utcoffset()
        assert offset is not None
        return int(offset.total_seconds() // 60)

    segments = [(start_utc, minutes(start_utc))]
    day = timedelta(days=1)
    low = start_utc
    while low < end_utc:
        high = min(low + day, end_utc)
        if minutes(high) != segments[-1][1]:
            # Bisect to the hour the offset changed.
            lo, hi = low, high
            while hi - lo > timedelta(hours=1):
                mid = lo + (hi - lo) / 2
                mid = mid.replace(minute=0, second=0, microsecond=0)
                if mid <= lo:
                    mid = lo + timedelta(hours=1)
                if minutes(mid) == segments[-1][1]:
                    lo = mid
                else:
                    hi = mid
            floor = hi.replace(minute=0, second=0, microsecond=0)
            if floor > lo and minutes(floor) != segments[-1][1]:
                hi = floor
            if hi < end_utc:
                segments.append((hi, minutes(hi)))
        low = high
    return segments


def _local_midnight_utc(day: date, zone: ZoneInfo) -> datetime:
    # fold=0 gives the first midnight when it repeats and, when a DST jump skips midnight,
    # the pre-transition offset, which lands exactly on the transition instant: the moment
    # the local day actually begins.
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def _zone(tz: str) -> ZoneInfo:
    return _validated_zone(tz)[1]


@lru_cache(maxsize=256)
def _validated_zone(tz: str) -> tuple[str, ZoneInfo]:
    if not isinstance(tz, str) or not tz.strip():
        raise ValueError(f"timezone must be a non-empty IANA name such as 'Asia/Seoul', got {tz!r}")
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {tz!r}: use an IANA name such as 'Asia/Seoul'") from exc
    odd = sorted(
        {offset for offset in _recent_offsets(zone) if offset % timedelta(hours=1)},
    )
    if odd:
        shown = ", ".join(_format_offset(o) for o in odd)
        raise ValueError(
            f"timezone {tz!r} uses UTC offsets that are not whole hours ({shown}); "
            "days are cut from hourly UTC buckets, so only whole-hour zones are supported"
        )
    return tz, zone


def _recent_offsets(zone: ZoneInfo) -> set[timedelta]:
    # Sampling twice a month finds every offset in force for more than ~2 weeks, which covers
    # standard and summer time of every zone.
    offsets: set[timedelta] = set()
    for year in range(_CHECK_FROM_YEAR, _CHECK_TO_YEAR + 1):
        for month in range(1, 13):
            for day in (1, 16):
                offset = datetime(year, month, day, 12, tzinfo=UTC).astimezone(zone).utcoffset()
                if offset is not None:
                    offsets.add(offset)
    return offsets


def _format_offset(offset: timedelta) -> str:
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(offset) // timedelta(minutes=1)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _check_period(period: str) -> None:
    if period not in PERIODS:
        raise ValueError(f"unknown period {period!r}; expected one of {', '.join(PERIODS)}")


def _require_aware(ts: datetime, name: str) -> datetime:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {ts.isoformat()}")
    return ts


def utc_bounds(first_day: date, end_day: date, tz: str) -> tuple[datetime, datetime]:
    """UTC [start, end) of the local days first_day .. end_day (exclusive) in ``tz``."""
    zone = ZoneInfo(tz)
    start = datetime(first_day.year, first_day.month, first_day.day, tzinfo=zone)
    end = datetime(end_day.year, end_day.month, end_day.day, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)
