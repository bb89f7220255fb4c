"""Readings of one device by time range: raw or bucketed, paged by a keyset cursor.

The cursor carries the last bucket start and ``as_of``, the time of the first page: later
pages only return rows received by then, so a cursor never skips or repeats a row that
existed when the first page was read, and late rows appear in a new query instead.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from sqlalchemy import Column, Connection, DateTime, Engine, Table, func, select

from powerflow_api import schemas
from powerflow_api.data import RAW_FIELDS, hourly_t, raw_point, readings_t
from powerflow_api.problems import ApiError
from powerflow_common.bounds import MAX_ROW_ID, MIN_ROW_ID, utc_in_bounds
from powerflow_common.db.models import QUARTER_HOUR_STATS as quarter_t
from powerflow_common.db.sqltime import BUCKET_EPOCH, bind_text, epoch_bucket, sql_time_of
from powerflow_common.periods import period_bounds_utc
from powerflow_common.queries import local_period_key
from powerflow_common.settings import Settings

_EPOCH = BUCKET_EPOCH.replace(tzinfo=UTC)  # bucket 0 starts here (db.sqltime)
_STEP_S = {"1m": 60}
# 15-minute points come from quarter_hour_stats (kept by the aggregator like hourly_stats),
# not raw readings: ~96 rows a device-day, so a month is ~2,900 rows whatever the raw rate.
QUARTER_HOUR_MAX_RANGE = timedelta(days=100)
CSV_MAX_RANGE = timedelta(days=400)
# Points from hourly statistics: at most ~9,600 hours, or ~10 years of days (one grouped
# query reads 87,600 hourly rows of a device: tens of milliseconds, not a million queries).
HOURLY_MAX_RANGE = timedelta(days=400)
DAILY_MAX_RANGE = timedelta(days=3700)


AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]


class Cursor(msgspec.Struct, frozen=True):
    after: AwareTime  # the next page starts strictly after this bucket or reading
    as_of: AwareTime  # rows received after this belong to a new query
    resolution: schemas.Resolution
    device_id: Annotated[int, msgspec.Meta(ge=MIN_ROW_ID, le=MAX_ROW_ID)]


@dataclass(frozen=True, slots=True)
class Window:
    """A validated query: device, range, resolution, page size and snapshot time."""

    device_id: int
    device_code: str
    timezone: str
    start: datetime
    end: datetime
    resolution: schemas.Resolution
    limit: int
    after: datetime | None
    as_of: datetime


def encode_cursor(cursor: Cursor) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(cursor)).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor:
    """The cursor ``encode_cursor`` made, or 400: a cursor is opaque, anything else is refused."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        cursor = msgspec.json.decode(raw, type=Cursor)
        # Its times feed SQL and date arithmetic: keep them in the range every query accepts.
        return msgspec.structs.replace(
            cursor,
            after=utc_in_bounds("cursor.after", cursor.after),
            as_of=utc_in_bounds("cursor.as_of", cursor.as_of),
        )
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise ApiError(
            status_code=400,
            detail="Invalid cursor: pass next_cursor from the previous page unchanged, "
            "or leave it out to start again.",
            extra=[{"key": "cursor", "message": "not a cursor this API returned"}],
        ) from exc


def as_utc(ts: datetime, name: str = "time") -> datetime:
    """Aware UTC (a time without an offset is taken as UTC), within the API's time range.

    Raises OutOfBounds (answered 400, naming ``name``) outside [EARLIEST_TIME, LATEST_TIME).
    """
    return utc_in_bounds(name, ts)


def check_range(
    settings: Settings, resolution: str, start: datetime, end: datetime, *, csv: bool = False
) -> None:
    """Refuse ranges that would read too many raw rows for one answer (400, with the fix)."""
    if end <= start:
        raise ApiError(status_code=400, detail="'end' must be after 'start'.")
    span = end - start
    if csv:
        limit = CSV_MAX_RANGE
    elif resolution == "raw":
        limit = timedelta(hours=settings.api_raw_max_range_h)
    elif resolution == "15m":
        limit = QUARTER_HOUR_MAX_RANGE
    elif resolution in _STEP_S:
        limit = timedelta(days=settings.api_minute_max_range_days)
    elif resolution == "1h":
        limit = HOURLY_MAX_RANGE
    else:
        limit = DAILY_MAX_RANGE
    if span > limit:
        hint = {
            "raw": "use resolution=1m, 15m, 1h or 1d for longer ranges",
            "1h": "use resolution=1d for longer ranges",
            "1d": "ask in several parts",
        }.get(resolution, "use resolution=1h or 1d for longer ranges")
        if csv:
            hint = "export in several parts"
        raise ApiError(
            status_code=400,
            detail=(
                f"Range of {span} is too long for resolution={resolution} "
                f"(at most {limit}); {hint}, or narrow start/end."
            ),
        )


def read_page(engine: Engine, w: Window) -> tuple[list[schemas.ReadingPoint], str | None]:
    """One page of points and the cursor of the next page (None on the last)."""
    with engine.connect() as conn:
        points = list(_points(conn, w, w.limit + 1))
    if len(points) <= w.limit:
        return points, None
    points = points[: w.limit]
    last = points[-1].ts
    return points, encode_cursor(
        Cursor(after=last, as_of=w.as_of, resolution=w.resolution, device_id=w.device_id)
    )


def iter_all(engine: Engine, w: Window, batch: int = 5000) -> Iterator[schemas.ReadingPoint]:
    """Every point of the window, read in keyset batches so a year never sits in memory."""
    after = w.after
    while True:
        window = Window(**{**_fields(w), "after": after, "limit": batch})
        with engine.connect() as conn:
            points = list(_points(conn, window, batch))
        yield from points
        if len(points) < batch:
            return
        after = points[-1].ts


def _fields(w: Window) -> dict[str, Any]:
    return {name: getattr(w, name) for name in Window.__slots__}


def _points(conn: Connection, w: Window, n: int) -> Iterator[schemas.ReadingPoint]:
    if w.resolution == "raw":
        yield from _raw(conn, w, n)
    elif w.resolution == "15m":
        yield from _quarter_hours(conn, w, n)
    elif w.resolution in _STEP_S:
        yield from _grouped(conn, w, n, _STEP_S[w.resolution])
    elif w.resolution == "1h":
        yield from _hourly(conn, w, n)
    else:
        yield from _daily(conn, w, n)


def _raw(conn: Connection, w: Window, n: int) -> Iterator[schemas.ReadingPoint]:
    r = readings_t
    stmt = (
        select(r.c.ts, *[r.c[f] for f in RAW_FIELDS])
        .where(
            r.c.device_id == w.device_id,
            r.c.ts >= w.start,
            r.c.ts < w.end,
            r.c.received_at <= w.as_of,
        )
        .order_by(r.c.ts)
        .limit(n)
    )
    if w.after is not None:
        stmt = stmt.where(r.c.ts > w.after)
    for row in conn.execute(stmt):
        yield raw_point(row)


def _grouped(conn: Connection, w: Window, n: int, step_s: int) -> Iterator[schemas.ReadingPoint]:
    r = readings_t
    # Integer bucket numbers from a fixed epoch: the same on every engine, and no
    # dependence on the session's time zone.
    bucket = epoch_bucket(r.c.ts, step_s).label("bucket")
    stmt = (
        select(
            bucket,
            func.count().label("samples"),
            func.avg(r.c.power_w).label("power_avg_w"),
            func.min(r.c.power_w).label("power_min_w"),
            func.max(r.c.power_w).label("power_max_w"),
            func.avg(r.c.temperature_c).label("temperature_avg_c"),
            func.avg(r.c.humidity_pct).label("humidity_avg_pct"),
            func.avg(r.c.brightness_lux).label("brightness_avg_lux"),
        )
        .where(
            r.c.device_id == w.device_id,
            r.c.ts >= w.start,
            r.c.ts < w.end,
            r.c.received_at <= w.as_of,
        )
        .group_by(bucket)
        .order_by(bucket)
        .limit(n)
    )
    if w.after is not None:
        stmt = stmt.where(r.c.ts >= w.after + timedelta(seconds=step_s))
    for row in conn.execute(stmt):
        yield schemas.ReadingPoint(
            ts=_EPOCH + timedelta(seconds=int(row.bucket) * step_s),
            samples=int(row.samples),
            power_avg_w=_f(row.power_avg_w),
            power_min_w=_f(row.power_min_w),
            power_max_w=_f(row.power_max_w),
            temperature_avg_c=_f(row.temperature_avg_c),
            humidity_avg_pct=_f(row.humidity_avg_pct),
            brightness_avg_lux=_f(row.brightness_avg_lux),
        )


def _hourly(conn: Connection, w: Window, n: int) -> Iterator[schemas.ReadingPoint]:
    """The device's hours (hourly_stats)."""
    return _stat_points(conn, w, n, hourly_t, hourly_t.c.hour_start)


def _quarter_hours(conn: Connection, w: Window, n: int) -> Iterator[schemas.ReadingPoint]:
    """The device's quarter hours (quarter_hour_stats), as 1h reads hourly_stats."""
    return _stat_points(conn, w, n, quarter_t, quarter_t.c.quarter_start)


def _stat_points(
    conn: Connection, w: Window, n: int, table: Table, start: Column[datetime]
) -> Iterator[schemas.ReadingPoint]:
    """Points of a table the aggregator keeps (hourly_stats, quarter_hour_stats): one row a
    point, keyed by ``start``. One query for both, so that 1h and 15m page alike."""
    # Only the columns a point carries: on MariaDB, decoding a row costs per column (pymysql).
    stmt = (
        select(
            start.label("start"),
            table.c.samples,
            table.c.energy_kwh,
            table.c.power_avg_w,
            table.c.power_min_w,
            table.c.power_max_w,
            table.c.temperature_avg_c,
            table.c.humidity_avg_pct,
            table.c.brightness_avg_lux,
        )
        .where(table.c.device_id == w.device_id, start >= w.start, start < w.end)
        .order_by(start)
        .limit(n)
    )
    if w.after is not None:
        stmt = stmt.where(start > w.after)
    for row in conn.execute(stmt):
        yield schemas.ReadingPoint(
            ts=row.start,
            samples=row.samples,
            power_avg_w=row.power_avg_w,
            power_min_w=row.power_min_w,
            power_max_w=row.power_max_w,
            temperature_avg_c=row.temperature_avg_c,
            humidity_avg_pct=row.humidity_avg_pct,
            brightness_avg_lux=row.brightness_avg_lux,
            energy_kwh=row.energy_kwh,
        )


def _daily(conn: Connection, w: Window, n: int) -> Iterator[schemas.ReadingPoint]:
    """Local days of the device's hourly statistics: one grouped query, at most n days."""
    lo = w.start
    if w.after is not None:
        lo = max(lo, period_bounds_utc("day", w.after, w.timezone)[1])
    if lo >= w.end:
        return
    sql = sql_time_of(conn)
    local_ts, key, params = local_period_key("day", w.timezone, lo, w.end, sql)
    weight = sql.greatest("samples", "1")
    weighted = ", ".join(
        f"SUM({c} * {weight}) / SUM(CASE WHEN {c} IS NOT NULL THEN {weight} END) AS {c}"
        for c in ("power_avg_w", "temperature_avg_c", "humidity_avg_pct", "brightness_avg_lux")
    )
    sql_text = f"""
        SELECT MIN(hour_start) AS first_hour, SUM(samples) AS samples,
               MIN(power_min_w) AS power_min_w, MAX(power_max_w) AS power_max_w,
               SUM(energy_kwh) AS energy_kwh, {weighted}
        FROM (
            SELECT hourly_stats.*, {local_ts} AS local_ts FROM hourly_stats
            WHERE device_id = :device AND hour_start >= :lo AND hour_start < :hi
        ) AS hours
        GROUP BY {key}
        ORDER BY first_hour
        LIMIT {int(n)}
        """
    naive = {
        "lo": lo.astimezone(UTC).replace(tzinfo=None),
        "hi": w.end.astimezone(UTC).replace(tzinfo=None),
    }
    statement = bind_text(
        sql_text, {**params, **naive, "device": w.device_id}, first_hour=DateTime()
    )
    for row in conn.execute(statement):
        first = row.first_hour.replace(tzinfo=UTC)
        yield schemas.ReadingPoint(
            ts=period_bounds_utc("day", first, w.timezone)[0],
            samples=int(row.samples or 0),
            power_avg_w=_f(row.power_avg_w),
            power_min_w=_f(row.power_min_w),
            power_max_w=_f(row.power_max_w),
            temperature_avg_c=_f(row.temperature_avg_c),
            humidity_avg_pct=_f(row.humidity_avg_pct),
            brightness_avg_lux=_f(row.brightness_avg_lux),
            energy_kwh=float(row.energy_kwh or 0.0),
        )


def _f(value: Any) -> float | None:
    return None if value is None else float(value)
