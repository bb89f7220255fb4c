"""Statistics from hourly_stats: energy, CO2 (location- and market-based), power, environment.

Hours are UTC in storage; days, weeks and months are cut in the scope's timezone by
powerflow_common.periods. Site totals count main meters when a site has any, else its
standalone meters; sub-meters are never added on top (they sit downstream of a main meter).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, bindparam, func, select, text

from powerflow_api import schemas
from powerflow_api.data import (
    contracts_t,
    device_rows,
    devices_t,
    factors_by_id,
    hourly_t,
    sites_t,
)
from powerflow_api.problems import ApiError
from powerflow_common.periods import (
    Period,
    bucket_start_local,
    period_bounds_utc,
    utc_offset_segments,
)
from powerflow_common.settings import Settings
from powerflow_common.sitetotals import SiteDevice, site_basis

ScopeKind = Literal["device", "site", "organisation"]

DEFAULT_SPAN: dict[str, timedelta] = {
    "hour": timedelta(hours=48),
    "day": timedelta(days=31),
    "week": timedelta(weeks=12),
    "month": timedelta(days=366),
}
MAX_SPAN: dict[str, timedelta] = {
    "hour": timedelta(days=31),
    "day": timedelta(days=800),
    "week": timedelta(days=800),
    "month": timedelta(days=3700),
}


@dataclass(frozen=True, slots=True)
class DeviceRef:
    id: int
    code: str
    site_id: int | None
    meter_role: str


@dataclass(slots=True)
class Scope:
    """What a statistic covers: its devices, which of them are counted for energy, its calendar."""

    kind: ScopeKind
    ref: str | None
    timezone: str
    devices: list[DeviceRef]
    counted: set[int] = field(default_factory=set)

    @property
    def site_ids(self) -> set[int]:
        return {d.site_id for d in self.devices if d.site_id is not None and d.id in self.counted}


def counted_device_ids(devices: Iterable[DeviceRef]) -> set[int]:
    """The devices whose energy adds up to a total without counting anything twice.

    Per site: the main meters when there is one, else the standalone devices; sub-meters
    never. A device without a site counts unless it is a sub-meter.
    """
    by_site: dict[int | None, list[DeviceRef]] = defaultdict(list)
    for d in devices:
        by_site[d.site_id].append(d)
    counted: set[int] = set()
    for site_id, members in by_site.items():
        if site_id is None:
            counted |= {d.id for d in members if d.meter_role != "sub"}
            continue
        # The shared rule (powerflow_common.sitetotals), so the API and reports agree.
        basis = site_basis(
            SiteDevice(id=d.id, code=d.code, meter_role=d.meter_role) for d in members
        )
        counted |= {d.id for d in members if d.meter_role == basis}
    return counted


def _refs(rows: Sequence[Any]) -> list[DeviceRef]:
    return [DeviceRef(r.id, r.code, r.site_id, r.meter_role) for r in rows]


def resolve_scope(conn: Connection, settings: Settings, kind: ScopeKind, ref: str | None) -> Scope:
    """The scope's devices and timezone; 404 with a hint when the device or site is unknown."""
    d = devices_t
    cols = (d.c.id, d.c.code, d.c.site_id, d.c.meter_role)
    if kind == "device":
        row = conn.execute(select(*cols).where(d.c.code == ref)).first()
        if row is None:
            raise ApiError(status_code=404, detail=f"No device with code {ref!r}.")
        tz = settings.api_timezone
        if row.site_id is not None:
            tz = conn.execute(
                select(sites_t.c.timezone).where(sites_t.c.id == row.site_id)
            ).scalar_one()
        device = DeviceRef(row.id, row.code, row.site_id, row.meter_role)
        # A device on its own counts whatever its role: it is what was asked for.
        return Scope(kind, ref, tz, [device], {device.id})
    if kind == "site":
        site = conn.execute(select(sites_t).where(sites_t.c.id == int(ref or 0))).first()
        if site is None:
            raise ApiError(status_code=404, detail=f"No site with id {ref}.")
        refs = _refs(conn.execute(select(*cols).where(d.c.site_id == site.id)).all())
        return Scope(kind, ref, site.timezone, refs, counted_device_ids(refs))
    refs = _refs(conn.execute(select(*cols)).all())
    return Scope(kind, None, settings.api_timezone, refs, counted_device_ids(refs))


def default_range(
    period: str, start: datetime | None, end: datetime | None
) -> tuple[datetime, datetime]:
    """[start, end) in UTC, defaulting to a span that suits the period and ending now."""
    end_utc = (end or datetime.now(UTC)).astimezone(UTC)
    start_utc = (start or end_utc - DEFAULT_SPAN[period]).astimezone(UTC)
    if end_utc <= start_utc:
        raise ApiError(status_code=400, detail="'end' must be after 'start'.")
    if end_utc - start_utc > MAX_SPAN[period]:
        raise ApiError(
            status_code=400,
            detail=f"Range too long for period={period} (at most {MAX_SPAN[period].days} days); "
            "use a longer period or narrow start/end.",
        )
    return start_utc, end_utc


@dataclass(slots=True)
class _Sums:
    """One local period of a scope, summed by the database (hours first, then the period)."""

    first_hour: datetime
    hours: int  # hours with data of a counted device
    device_hours: int
    energy_kwh: float
    export_kwh: float
    unallocated_kwh: float
    co2_kg: float
    coverage_sum: float
    demand_sum_w: float  # per hour: the counted devices' summed average power
    demand_hours: int
    demand_max_w: float | None
    sample_max_w: float | None  # the highest sample of any counted device
    env: dict[str, tuple[float, float]]  # name -> (sum of value x samples, sum of samples)


ENV_COLUMNS = ("temperature_avg_c", "humidity_avg_pct", "brightness_avg_lux")

_LOCAL_KEY = {
    "hour": "hs",
    "day": "DATE(local_ts)",
    "week": "DATE(local_ts) - INTERVAL WEEKDAY(local_ts) DAY",
    "month": "DATE_FORMAT(local_ts, '%Y-%m-01')",
}


def _period_sums(
    conn: Connection, scope: Scope, period: Period, start: datetime, end: datetime
) -> tuple[list[_Sums], set[int]]:
    """Per local period of the scope (ordered), and the emission factors its counted hours used.

    The database sums devices per hour, then hours per local period (the zone's offset
    pieces come from periods.utc_offset_segments), so a year of a site returns 366 rows.
    """
    ids = sorted(d.id for d in scope.devices)
    if not ids:
        return [], set()
    counted = sorted(scope.counted) or [-1]
    segments = utc_offset_segments(scope.timezone, start, end)
    offset_sql = "CASE " + " ".join(
        f"WHEN hs < :seg_{i} THEN {segments[i - 1][1]}" for i in range(1, len(segments))
    )
    offset_sql = (
        f"{offset_sql} ELSE {segments[-1][1]} END" if len(segments) > 1 else str(segments[0][1])
    )
    env_inner = ", ".join(
        f"SUM({c} * GREATEST(samples, 1)) AS {c}_vw,"
        f" SUM(CASE WHEN {c} IS NOT NULL THEN GREATEST(samples, 1) END) AS {c}_w"
        for c in ENV_COLUMNS
    )
    env_outer = ", ".join(f"SUM({c}_vw) AS {c}_vw, SUM({c}_w) AS {c}_w" for c in ENV_COLUMNS)
    counted_case = "CASE WHEN device_id IN :counted THEN {} END"
    statement = text(
        f"""
        SELECT MIN(hs) AS first_hour,
               SUM(counted_rows > 0) AS hours, SUM(counted_rows) AS device_hours,
               SUM(energy) AS energy, SUM(export) AS export, SUM(unallocated) AS unallocated,
               SUM(co2) AS co2, SUM(coverage) AS coverage,
               SUM(demand) AS demand_sum, COUNT(demand) AS demand_hours,
               MAX(demand) AS demand_max, MAX(sample_max) AS sample_max, {env_outer}
        FROM (
            SELECT hour_start AS hs,
                   hour_start + INTERVAL ({offset_sql}) MINUTE AS local_ts,
                   SUM(device_id IN :counted) AS counted_rows,
                   SUM({counted_case.format("energy_kwh")}) AS energy,
                   SUM({counted_case.format("export_kwh")}) AS export,
                   SUM({counted_case.format("unallocated_kwh")}) AS unallocated,
                   SUM({counted_case.format("co2_kg")}) AS co2,
                   SUM({counted_case.format("coverage")}) AS coverage,
                   SUM({counted_case.format("power_avg_w")}) AS demand,
                   MAX({counted_case.format("power_max_w")}) AS sample_max,
                   {env_inner}
            FROM hourly_stats
            WHERE device_id IN :ids AND hour_start >= :start AND hour_start < :end
            GROUP BY hour_start
        ) AS per_hour
        GROUP BY {_LOCAL_KEY[period]}
        ORDER BY first_hour
        """
    ).bindparams(bindparam("ids", expanding=True), bindparam("counted", expanding=True))

    def naive(at: datetime) -> datetime:  # plain SQL: UTC without an offset, as stored
        return at.astimezone(UTC).replace(tzinfo=None)

    params: dict[str, Any] = {
        "ids": ids,
        "counted": counted,
        "start": naive(start),
        "end": naive(end),
    }
    params.update({f"seg_{i}": naive(segments[i][0]) for i in range(1, len(segments))})
    rows = conn.execute(statement, params).all()
    h = hourly_t
    factor_ids = set(
        conn.execute(
            select(h.c.emission_factor_id)
            .distinct()
            .where(
                h.c.device_id.in_(counted),
                h.c.hour_start >= start,
                h.c.hour_start < end,
                h.c.emission_factor_id.is_not(None),
            )
        ).scalars()
    )

    def num(value: Any) -> float:
        return float(value or 0.0)

    sums = [
        _Sums(
            first_hour=r.first_hour.replace(tzinfo=UTC),
            hours=int(r.hours or 0),
            device_hours=int(r.device_hours or 0),
            energy_kwh=num(r.energy),
            export_kwh=num(r.export),
            unallocated_kwh=num(r.unallocated),
            co2_kg=num(r.co2),
            coverage_sum=num(r.coverage),
            demand_sum_w=num(r.demand_sum),
            demand_hours=int(r.demand_hours or 0),
            demand_max_w=None if r.demand_max is None else float(r.demand_max),
            sample_max_w=None if r.sample_max is None else float(r.sample_max),
            env={c: (num(getattr(r, f"{c}_vw")), num(getattr(r, f"{c}_w"))) for c in ENV_COLUMNS},
        )
        for r in rows
    ]
    return sums, factor_ids


@dataclass(slots=True)
class _Contract:
    start: datetime
    end: datetime
    kwh_per_s: float


def _contracts(
    conn: Connection, settings: Settings, site_ids: set[int], start: datetime, end: datetime
) -> list[_Contract]:
    """Renewable contracts of these sites, spread evenly over their (inclusive) date ranges."""
    if not site_ids:
        return []
    c = contracts_t
    rows = conn.execute(
        select(c, sites_t.c.timezone)
        .join(sites_t, sites_t.c.id == c.c.site_id)
        .where(c.c.site_id.in_(sorted(site_ids)))
    ).all()
    out = []
    for row in rows:
        lo = _local_midnight(row.period_start, row.timezone)
        hi = _local_midnight(row.period_end + timedelta(days=1), row.timezone)
        if hi <= lo or hi <= start or lo >= end:
            continue
        out.append(_Contract(lo, hi, row.energy_kwh / (hi - lo).total_seconds()))
    return out


def _local_midnight(day: date, tz: str) -> datetime:
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    return period_bounds_utc("day", noon, tz)[0]


def _contracted_kwh(contracts: list[_Contract], lo: datetime, hi: datetime) -> float:
    total = 0.0
    for c in contracts:
        overlap = (min(hi, c.end) - max(lo, c.start)).total_seconds()
        if overlap > 0:
            total += overlap * c.kwh_per_s
    return total


def series(
    conn: Connection,
    settings: Settings,
    scope: Scope,
    period: schemas.StatsPeriod,
    start: datetime,
    end: datetime,
) -> schemas.StatsSeries:
    """The scope's statistics per period in its timezone, with totals and the factors used."""
    sums, factor_ids = _period_sums(conn, scope, period, start, end)
    contracts = _contracts(conn, settings, scope.site_ids, start, end)
    single = len(scope.counted) == 1
    buckets = []
    totals = schemas.StatsTotals(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, None)
    for part in sums:
        lo, hi = period_bounds_utc(period, part.first_hour, scope.timezone)
        local_start = bucket_start_local(lo, period, scope.timezone)
        bucket = _bucket(part, single, local_start, hi.astimezone(local_start.tzinfo))
        contracted = _contracted_kwh(contracts, max(lo, start), min(hi, end))
        if bucket.energy_kwh > 0:
            residual = max(0.0, bucket.energy_kwh - contracted)
            bucket.co2_market_kg = bucket.co2_location_kg * residual / bucket.energy_kwh
        buckets.append(bucket)
        totals.energy_kwh += bucket.energy_kwh
        totals.export_kwh += bucket.export_kwh
        totals.unallocated_kwh += bucket.unallocated_kwh
        totals.co2_location_kg += bucket.co2_location_kg
        totals.co2_market_kg += bucket.co2_market_kg
        totals.contracted_renewable_kwh += contracted
        if bucket.power_max_w is not None:
            totals.power_max_w = max(totals.power_max_w or bucket.power_max_w, bucket.power_max_w)
    codes = sorted(d.code for d in scope.devices if d.id in scope.counted)
    return schemas.StatsSeries(
        scope=scope.kind,
        scope_ref=scope.ref,
        period=period,
        timezone=scope.timezone,
        start=start,
        end=end,
        devices=codes,
        factors=factors_by_id(conn, factor_ids),
        market_note=_market_note(contracts, totals),
        totals=totals,
        buckets=buckets,
    )


def _market_note(contracts: list[_Contract], totals: schemas.StatsTotals) -> str:
    if not contracts:
        return "no contractual instruments: market-based equals location-based"
    return (
        f"{totals.contracted_renewable_kwh:.3f} kWh of contracted renewable electricity "
        "(spread evenly over each contract's period) subtracted; the rest at the "
        "location-based factor (no residual-mix factor)"
    )


def _bucket(part: _Sums, single: bool, start: datetime, end: datetime) -> schemas.StatsBucket:
    # Peaks of different meters rarely coincide: a site's peak is its highest hourly demand.
    power_max = part.sample_max_w if single else part.demand_max_w
    return schemas.StatsBucket(
        start=start,
        end=end,
        hours=part.hours,
        energy_kwh=part.energy_kwh,
        export_kwh=part.export_kwh,
        unallocated_kwh=part.unallocated_kwh,
        co2_location_kg=part.co2_kg,
        co2_market_kg=part.co2_kg,
        power_avg_w=part.demand_sum_w / part.demand_hours if part.demand_hours else None,
        power_max_w=power_max,
        temperature_avg_c=_weighted(part, "temperature_avg_c"),
        humidity_avg_pct=_weighted(part, "humidity_avg_pct"),
        brightness_avg_lux=_weighted(part, "brightness_avg_lux"),
        coverage=part.coverage_sum / part.device_hours if part.device_hours else 0.0,
    )


def _weighted(part: _Sums, name: str) -> float | None:
    value_sum, weights = part.env[name]
    return None if weights == 0 else value_sum / weights


def summary(
    conn: Connection, settings: Settings, scope: Scope, now: datetime | None = None
) -> schemas.Summary:
    """Now W, today and this month versus the same elapsed span of the previous day/month."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    threshold = now - timedelta(seconds=settings.api_online_threshold_s)
    devices = [r for r in device_rows(conn) if r.id in {d.id for d in scope.devices}]
    online = [r for r in devices if r.last_seen_at >= threshold]
    now_w = sum(r.latest_power_w or 0.0 for r in online if r.id in scope.counted)
    factor_ids: set[int] = set()
    comparisons = []
    periods: tuple[Period, Period] = ("day", "month")
    for period in periods:
        start, _ = period_bounds_utc(period, now, scope.timezone)
        prev_start, _ = period_bounds_utc(
            period,
            start - timedelta(microseconds=1),
            scope.timezone,
        )
        prev_end = min(prev_start + (now - start), start)
        cur = _figures(conn, scope.counted, start, now, factor_ids)
        prev = _figures(conn, scope.counted, prev_start, prev_end, factor_ids)
        change = (
            None
            if prev.energy_kwh == 0
            else 100.0 * (cur.energy_kwh - prev.energy_kwh) / prev.energy_kwh
        )
        comparisons.append(schemas.Comparison(current=cur, previous=prev, change_pct=change))
    return schemas.Summary(
        scope="site" if scope.kind == "site" else "organisation",
        scope_ref=scope.ref,
        timezone=scope.timezone,
        now_w=now_w,
        devices_online=len(online),
        devices_total=len(devices),
        today=comparisons[0],
        this_month=comparisons[1],
        factors=factors_by_id(conn, factor_ids),
    )


def _figures(
    conn: Connection, ids: set[int], start: datetime, end: datetime, factor_ids: set[int]
) -> schemas.PeriodFigures:
    """kWh and kg CO2 of ``ids`` over [start, end), summed by the database."""
    energy_kwh = co2_kg = 0.0
    if ids:
        h = hourly_t
        in_range = (h.c.device_id.in_(sorted(ids)), h.c.hour_start >= start, h.c.hour_start < end)
        energy, co2 = conn.execute(
            select(func.sum(h.c.energy_kwh), func.sum(h.c.co2_kg)).where(*in_range)
        ).one()
        energy_kwh, co2_kg = float(energy or 0.0), float(co2 or 0.0)
        factor_ids |= set(
            conn.execute(
                select(h.c.emission_factor_id)
                .distinct()
                .where(*in_range, h.c.emission_factor_id.is_not(None))
            ).scalars()
        )
    return schemas.PeriodFigures(
        start=start, end=end, energy_kwh=energy_kwh, co2_location_kg=co2_kg
    )
