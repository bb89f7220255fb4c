"""daily_site_stats: each site's local days as the totals sum them, kept so a year is 365 rows.

The days are a *cache* of ``queries.period_sums(scope=site, period="day")`` over
hourly_stats: the same SQL fills them, so a cached day is the figure the live query gives.
What a day depends on besides hourly_stats is the site's spans (which devices sat on it when,
in which meter role, admitted or not) and its timezone: those are hashed into a fingerprint.
A site's days are served only while ``daily_site_state`` holds the fingerprint its inputs
have *now* (computed from the scope the request loaded anyway), so a stale day is never
served, whoever changed the inputs and however (API, CLI, SQL by hand):

- the aggregator refreshes the days of the hours it recomputed (``refresh_days``) after
  committing them, under a per-site lock, and only while the state is current;
- the write paths that change the inputs (placements, admission, a site's timezone) drop the
  site's state in their own transaction (``invalidate_sites``);
- a read that finds no current state computes the answer from hourly_stats as before, then
  rebuilds the site (``rebuild_site``, one grouped query over its hours).

Renewable contracts are not cached: market-based CO2 is computed from the cached kWh and the
contracts when a chart is read. Factor sets reach the days through hourly_stats: a
recomputed hour refreshes its day.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, delete, select

from powerflow_common.db.dialect import begin_write, dialect_of, lock_name
from powerflow_common.db.models import (
    DAILY_SITE_STATE,
    DAILY_SITE_STATS,
    DEVICE_SITES,
    DEVICES,
    HOURLY_STATS,
)
from powerflow_common.db.sqltime import bind_text, sql_time_of
from powerflow_common.logs import get_logger
from powerflow_common.periods import Period, period_bounds_utc
from powerflow_common.queries import (
    ENV_COLUMNS,
    PeriodSums,
    ScopeNotFound,
    TotalsScope,
    load_scope,
    local_period_key,
    period_sums,
    span_condition,
)
from powerflow_common.totals import SiteEnergy

__all__ = [
    "CACHED_PERIODS",
    "CACHE_FORMAT",
    "cached_period_sums",
    "fingerprint",
    "invalidate_devices",
    "invalidate_sites",
    "is_current",
    "rebuild_site",
    "refresh_days",
    "sites_of_devices",
]

log = get_logger(__name__)

# Bumped when what a row means changes: every site's state then differs and is rebuilt.
CACHE_FORMAT = 1
# Periods assembled from whole local days of the site.
CACHED_PERIODS: frozenset[Period] = frozenset({"day", "week", "month"})
# Past this many touched days of one site, one grouped query over the site beats one per run
# of days (a factor-set change restating a year, say).
BULK_REBUILD_DAYS = 62
# A recompute of more hours than this (a restatement) drops its sites' state before it starts.
BULK_REBUILD_HOURS = 2000
_LOCK_PREFIX = "pfday"
_ENV_FIELDS = {
    "temperature_avg_c": ("temperature_c_x_samples", "temperature_samples"),
    "humidity_avg_pct": ("humidity_pct_x_samples", "humidity_samples"),
    "brightness_avg_lux": ("brightness_lux_x_samples", "brightness_samples"),
}
assert set(_ENV_FIELDS) == set(ENV_COLUMNS)

_days = DAILY_SITE_STATS
_state = DAILY_SITE_STATE
_hours = HOURLY_STATS


def fingerprint(scope: TotalsScope) -> str:
    """What a site's days depend on besides hourly_stats: its spans and timezone, hashed."""
    spans = sorted(
        (s.device_id, s.site_id, s.meter_role, s.counted, s.start.isoformat(), s.end.isoformat())
        for s in scope.spans
    )
    text = json.dumps([CACHE_FORMAT, scope.timezone, spans], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def invalidate_sites(conn: Connection, site_ids: Iterable[int | None]) -> None:
    """Stop serving these sites' days (in the caller's transaction); rebuilt on next read."""
    ids = sorted({s for s in site_ids if s is not None})
    if ids:
        conn.execute(delete(_state).where(_state.c.site_id.in_(ids)))


def invalidate_devices(engine: Engine, device_ids: Iterable[int]) -> None:
    """Stop serving the days of every site these devices ever sat on (own transaction)."""
    with begin_write(engine) as conn:
        sites = sites_of_devices(conn, device_ids)
        invalidate_sites(conn, {s for ids in sites.values() for s in ids})


def sites_of_devices(conn: Connection, device_ids: Iterable[int]) -> dict[int, set[int]]:
    """Every site each device sits on now or sat on in its history."""
    ids = sorted(set(device_ids))
    out: dict[int, set[int]] = defaultdict(set)
    if not ids:
        return out
    for device_id, site_id in conn.execute(
        select(DEVICES.c.id, DEVICES.c.site_id).where(DEVICES.c.id.in_(ids))
    ):
        if site_id is not None:
            out[device_id].add(site_id)
    for device_id, site_id in conn.execute(
        select(DEVICE_SITES.c.device_id, DEVICE_SITES.c.site_id)
        .distinct()
        .where(DEVICE_SITES.c.device_id.in_(ids))
    ):
        if site_id is not None:
            out[device_id].add(site_id)
    return out


# --- writing --------------------------------------------------------------------------------


def _site_lock(conn: Connection, site_id: int) -> str:
    return lock_name(_LOCK_PREFIX, conn.engine.url.database or "", site_id)


def rebuild_site(engine: Engine, site_id: int, *, default_tz: str, lock_timeout_s: float) -> int:
    """Recompute every day of the site from hourly_stats and mark it current; the days stored.

    Raises LockNotAcquired when another copy holds the site for longer than the timeout.
    """
    with engine.connect() as conn:
        with dialect_of(conn).exclusive(conn, _site_lock(conn, site_id), lock_timeout_s):
            try:
                scope = load_scope(conn, "site", default_tz=default_tz, site_id=site_id)
            except ScopeNotFound:
                return 0  # the site was deleted: its rows went with it (ON DELETE CASCADE)
            conn.execute(delete(_days).where(_days.c.site_id == site_id))
            stored = 0
            extent = _hours_extent(conn, scope)
            if extent is not None:
                lo = period_bounds_utc("day", extent[0], scope.timezone)[0]
                hi = period_bounds_utc("day", extent[1], scope.timezone)[1]
                stored = _store_days(conn, scope, lo, hi)
            _set_state(conn, site_id, fingerprint(scope))
        conn.commit()
    log.info("daily_site_rebuilt", site_id=site_id, days=stored)
    return stored


def refresh_days(
    engine: Engine,
    device_hours: Iterable[tuple[int, datetime]],
    *,
    default_tz: str,
    lock_timeout_s: float,
) -> int:
    """Recompute the site days holding these (device, UTC hour)s, after they were committed.

    A site whose state is missing or stale is left alone (it is not served, and is rebuilt
    when next read). Returns the days stored. Raises LockNotAcquired like rebuild_site.
    """
    hours_by_device: dict[int, set[datetime]] = defaultdict(set)
    for device_id, hour in device_hours:
        hours_by_device[device_id].add(hour.astimezone(UTC))
    if not hours_by_device:
        return 0
    with engine.connect() as conn:
        sites = sites_of_devices(conn, hours_by_device)
        # Only sites whose days are served need them; the others are rebuilt when read. (Checked
        # again under the lock: this only spares the lock, SQLite's one write lock, to them.)
        served = set(
            conn.execute(
                select(_state.c.site_id).where(
                    _state.c.site_id.in_(sorted({s for ids in sites.values() for s in ids}))
                )
            ).scalars()
        )
        conn.commit()
        hours_by_site: dict[int, set[datetime]] = defaultdict(set)
        for device_id, site_ids in sites.items():
            for site_id in site_ids & served:
                hours_by_site[site_id] |= hours_by_device[device_id]
        stored = 0
        for site_id, hours in sorted(hours_by_site.items()):
            stored += _refresh_site(conn, site_id, hours, default_tz, lock_timeout_s)
    return stored


def _refresh_site(
    conn: Connection, site_id: int, hours: set[datetime], default_tz: str, lock_timeout_s: float
) -> int:
    with dialect_of(conn).exclusive(conn, _site_lock(conn, site_id), lock_timeout_s):
        state = conn.execute(
            select(_state.c.fingerprint).where(_state.c.site_id == site_id)
        ).scalar()
        if state is None:
            return 0  # not served: the next read rebuilds it
        try:
            scope = load_scope(conn, "site", default_tz=default_tz, site_id=site_id)
        except ScopeNotFound:
            return 0
        if fingerprint(scope) != state:
            # Its inputs changed and nobody said so: never serve these days again as they are.
            conn.execute(delete(_state).where(_state.c.site_id == site_id))
            log.warning("daily_site_stale", site_id=site_id, fix="rebuilt when next read")
            return 0
        days = sorted({period_bounds_utc("day", h, scope.timezone) for h in hours})
        if len(days) <= BULK_REBUILD_DAYS:
            stored = 0
            for lo, hi in _runs(days):
                # The one place a day leaves the table: replaced by what period_sums returns
                # (nothing, when its hours went).
                conn.execute(
                    delete(_days).where(
                        _days.c.site_id == site_id, _days.c.day_start >= lo, _days.c.day_start < hi
                    )
                )
                stored += _store_days(conn, scope, lo, hi)
            return stored
    # Many days (a restatement): one grouped query over the site beats one per run of days.
    return rebuild_site(conn.engine, site_id, default_tz=default_tz, lock_timeout_s=lock_timeout_s)


def _runs(days: Sequence[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Consecutive days joined into [start, end) runs."""
    runs: list[tuple[datetime, datetime]] = []
    for lo, hi in days:
        if runs and runs[-1][1] == lo:
            runs[-1] = (runs[-1][0], hi)
        else:
            runs.append((lo, hi))
    return runs


def _hours_extent(conn: Connection, scope: TotalsScope) -> tuple[datetime, datetime] | None:
    """The first and last hour the site's devices have in hourly_stats."""
    in_scope, params = span_condition(scope.spans, counted_only=False, prefix="x")
    row = conn.execute(
        bind_text(
            f"SELECT MIN(hour_start) AS lo, MAX(hour_start) AS hi FROM hourly_stats"
            f" WHERE {in_scope}",
            params,
            lo=_hours.c.hour_start.type,
            hi=_hours.c.hour_start.type,
        )
    ).first()
    if row is None or row.lo is None:
        return None
    return row.lo, row.hi


def _store_days(conn: Connection, scope: TotalsScope, lo: datetime, hi: datetime) -> int:
    """Insert the site's days in [lo, hi) (local midnights) as period_sums gives them."""
    assert scope.site_id is not None
    # Contracts are applied when read; without them period_sums skips its per-site query.
    plain = dataclasses.replace(scope, contracts={})
    sums, _ = period_sums(conn, plain, "day", lo, hi)
    factors = _factor_ids_by_day(conn, scope, lo, hi)
    now = datetime.now(UTC)
    rows = [
        _row(scope.site_id, scope.timezone, part, factors.get(part.start, set()), now)
        for part in sums
    ]
    if rows:
        conn.execute(_days.insert(), rows)
    return len(rows)


def _row(
    site_id: int, tz: str, part: PeriodSums, factor_ids: set[int], now: datetime
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "site_id": site_id,
        "day": part.start.astimezone(ZoneInfo(tz)).date(),  # the start is local midnight
        "day_start": part.start,
        "day_end": part.end,
        "hours": part.hours,
        "device_hours": part.device_hours,
        "energy_kwh": part.energy_kwh,
        "export_kwh": part.export_kwh,
        "unallocated_kwh": part.unallocated_kwh,
        "co2_kg": part.co2_kg,
        "coverage_sum": part.coverage_sum,
        "demand_sum_w": part.demand_sum_w,
        "demand_hours": part.demand_hours,
        "demand_max_w": part.demand_max_w,
        "sample_max_w": part.sample_max_w,
        "emission_factor_ids": ",".join(str(i) for i in sorted(factor_ids)) or None,
        "computed_at": now,
    }
    for name, (value_col, weight_col) in _ENV_FIELDS.items():
        row[value_col], row[weight_col] = part.env[name]
    return row


def _factor_ids_by_day(
    conn: Connection, scope: TotalsScope, lo: datetime, hi: datetime
) -> dict[datetime, set[int]]:
    """The emission factors each local day's counted hours used."""
    counted, params = span_condition(scope.spans, counted_only=True, prefix="ct")
    local_ts, key, p_local = local_period_key("day", scope.timezone, lo, hi, sql_time_of(conn))
    statement = bind_text(
        f"""
        SELECT MIN(hs) AS first_hour, factor_id FROM (
            SELECT hour_start AS hs, {local_ts} AS local_ts, emission_factor_id AS factor_id
            FROM hourly_stats
            WHERE {counted} AND hour_start >= :start AND hour_start < :end
              AND emission_factor_id IS NOT NULL
        ) AS counted_hours
        GROUP BY {key}, factor_id
        """,
        {**params, **p_local, "start": _naive(lo), "end": _naive(hi)},
        first_hour=_hours.c.hour_start.type,
    )
    out: dict[datetime, set[int]] = defaultdict(set)
    for r in conn.execute(statement):
        day_lo = period_bounds_utc("day", r.first_hour, scope.timezone)[0]
        out[day_lo].add(int(r.factor_id))
    return out


def _set_state(conn: Connection, site_id: int, print_: str) -> None:
    values = {"site_id": site_id, "fingerprint": print_, "built_at": datetime.now(UTC)}
    upsert = dialect_of(conn).upsert(_state, ["site_id"], values)
    conn.execute(upsert.on_conflict({k: upsert.incoming[k] for k in ("fingerprint", "built_at")}))


def _naive(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None)


# --- reading --------------------------------------------------------------------------------


def is_current(conn: Connection, scope: TotalsScope) -> bool:
    """The site's days were built for the inputs ``scope`` has now (its spans, timezone)."""
    if scope.site_id is None:
        return False
    state = conn.execute(
        select(_state.c.fingerprint).where(_state.c.site_id == scope.site_id)
    ).scalar()
    return state is not None and state == fingerprint(scope)


def cached_period_sums(
    conn: Connection, scope: TotalsScope, period: Period, start: datetime, end: datetime
) -> tuple[list[PeriodSums], set[int]] | None:
    """period_sums of a site from its cached days (edges of the range live), or None.

    None: not a site scope or period the cache serves, or the site's days are not current
    (no state, or its fingerprint is not the inputs' now): the caller asks period_sums.
    """
    if scope.kind != "site" or scope.site_id is None or period not in CACHED_PERIODS:
        return None
    if not is_current(conn, scope):
        return None
    tz = scope.timezone
    first_lo, first_hi = period_bounds_utc("day", start, tz)
    inner_lo = start if start == first_lo else first_hi
    inner_hi = period_bounds_utc("day", end, tz)[0]
    if inner_hi <= inner_lo:
        return None  # less than a whole day: nothing to read from the cache
    pieces: list[PeriodSums] = []
    factor_ids: set[int] = set()
    for lo, hi in ((start, inner_lo), (inner_hi, end)):
        if lo < hi:  # a part day at an end of the range, from its few hours
            edge, ids = period_sums(conn, scope, "day", lo, hi)
            pieces += edge
            factor_ids |= ids
    has_contracts = any(periods for _, periods in scope.contracts.values())
    # Only what a day's sums need (on MariaDB, decoding costs per column: pymysql).
    wanted = [c for c in _days.c if c.name not in ("site_id", "day", "computed_at")]
    for r in conn.execute(
        select(*wanted)
        .where(
            _days.c.site_id == scope.site_id,
            _days.c.day_start >= inner_lo,
            _days.c.day_start < inner_hi,
        )
        .order_by(_days.c.day_start)
    ):
        part = _from_row(r)
        if has_contracts:
            if part.device_hours:  # as period_sums' per-site query: counted hours only
                part.sites.append(
                    SiteEnergy(scope.site_id, part.energy_kwh + part.unallocated_kwh, part.co2_kg)
                )
        else:
            part.sites.append(SiteEnergy(None, part.energy_kwh + part.unallocated_kwh, part.co2_kg))
        pieces.append(part)
        if r.emission_factor_ids:
            factor_ids |= {int(i) for i in r.emission_factor_ids.split(",")}
    if period == "day":
        return sorted(pieces, key=lambda p: p.start), factor_ids
    return _merge(pieces, period, tz), factor_ids


def _from_row(r: Any) -> PeriodSums:
    return PeriodSums(
        start=r.day_start,
        end=r.day_end,
        hours=r.hours,
        device_hours=r.device_hours,
        energy_kwh=r.energy_kwh,
        export_kwh=r.export_kwh,
        unallocated_kwh=r.unallocated_kwh,
        co2_kg=r.co2_kg,
        coverage_sum=r.coverage_sum,
        demand_sum_w=r.demand_sum_w,
        demand_hours=r.demand_hours,
        demand_max_w=r.demand_max_w,
        sample_max_w=r.sample_max_w,
        env={
            name: (getattr(r, value_col), getattr(r, weight_col))
            for name, (value_col, weight_col) in _ENV_FIELDS.items()
        },
    )


def _merge(days: Sequence[PeriodSums], period: Period, tz: str) -> list[PeriodSums]:
    """Days summed into the weeks or months (of the site's calendar) that hold them."""
    groups: dict[datetime, list[PeriodSums]] = defaultdict(list)
    for d in days:
        groups[period_bounds_utc(period, d.start, tz)[0]].append(d)
    out: list[PeriodSums] = []
    for lo in sorted(groups):
        parts = groups[lo]
        hi = period_bounds_utc(period, lo, tz)[1]
        sites: dict[int | None, list[SiteEnergy]] = defaultdict(list)
        for p in parts:
            for s in p.sites:
                sites[s.site_id].append(s)
        out.append(
            PeriodSums(
                start=lo,
                end=hi,
                hours=sum(p.hours for p in parts),
                device_hours=sum(p.device_hours for p in parts),
                energy_kwh=math.fsum(p.energy_kwh for p in parts),
                export_kwh=math.fsum(p.export_kwh for p in parts),
                unallocated_kwh=math.fsum(p.unallocated_kwh for p in parts),
                co2_kg=math.fsum(p.co2_kg for p in parts),
                coverage_sum=math.fsum(p.coverage_sum for p in parts),
                demand_sum_w=math.fsum(p.demand_sum_w for p in parts),
                demand_hours=sum(p.demand_hours for p in parts),
                demand_max_w=_max(p.demand_max_w for p in parts),
                sample_max_w=_max(p.sample_max_w for p in parts),
                env={
                    name: (
                        math.fsum(p.env[name][0] for p in parts),
                        math.fsum(p.env[name][1] for p in parts),
                    )
                    for name in ENV_COLUMNS
                },
                sites=[
                    SiteEnergy(
                        site,
                        math.fsum(s.kwh for s in members),
                        math.fsum(s.co2_kg for s in members),
                    )
                    for site, members in sites.items()
                ],
            )
        )
    return out


def _max(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None
