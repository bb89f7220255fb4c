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

from sqlalchemy import Connection, select

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
from powerflow_common.periods import Period, bucket_start_local, period_bounds_utc
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


def _hourly_rows(conn: Connection, ids: Iterable[int], start: datetime, end: datetime) -> list[Any]:
    ids = sorted(ids)
    if not ids:
        return []
    h = hourly_t
    return list(
        conn.execute(
            select(h)
            .where(h.c.device_id.in_(ids), h.c.hour_start >= start, h.c.hour_start < end)
            .order_by(h.c.hour_start)
        ).all()
    )


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
    rows = _hourly_rows(conn, (d.id for d in scope.devices), start, end)
    contracts = _contracts(conn, settings, scope.site_ids, start, end)
    single = len(scope.counted) == 1
    groups: dict[datetime, list[Any]] = defaultdict(list)
    for row in rows:
        groups[bucket_start_local(row.hour_start, period, scope.timezone)].append(row)
    buckets = []
    factor_ids: set[int] = set()
    totals = schemas.StatsTotals(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, None)
    for local_start in sorted(groups):
        group = groups[local_start]
        counted = [r for r in group if r.device_id in scope.counted]
        factor_ids |= {r.emission_factor_id for r in counted if r.emission_factor_id is not None}
        lo, hi = period_bounds_utc(period, local_start, scope.timezone)
        bucket = _bucket(counted, group, single, local_start, hi.astimezone(local_start.tzinfo))
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


def _bucket(
    counted: list[Any], group: list[Any], single: bool, start: datetime, end: datetime
) -> schemas.StatsBucket:
    per_hour: dict[datetime, float] = defaultdict(float)
    for r in counted:
        if r.power_avg_w is not None:
            per_hour[r.hour_start] += r.power_avg_w
    if single:
        maxima = [r.power_max_w for r in counted if r.power_max_w is not None]
        power_max = max(maxima) if maxima else None
    else:
        # Peaks of different meters rarely coincide: a site's peak is its highest hourly demand.
        power_max = max(per_hour.values()) if per_hour else None
    co2 = sum(r.co2_kg for r in counted)
    return schemas.StatsBucket(
        start=start,
        end=end,
        hours=len({r.hour_start for r in counted}),
        energy_kwh=sum(r.energy_kwh for r in counted),
        export_kwh=sum(r.export_kwh for r in counted),
        unallocated_kwh=sum(r.unallocated_kwh for r in counted),
        co2_location_kg=co2,
        co2_market_kg=co2,
        power_avg_w=sum(per_hour.values()) / len(per_hour) if per_hour else None,
        power_max_w=power_max,
        temperature_avg_c=_weighted(group, "temperature_avg_c"),
        humidity_avg_pct=_weighted(group, "humidity_avg_pct"),
        brightness_avg_lux=_weighted(group, "brightness_avg_lux"),
        coverage=sum(r.coverage for r in counted) / len(counted) if counted else 0.0,
    )


def _weighted(rows: list[Any], name: str) -> float | None:
    pairs = [(getattr(r, name), max(r.samples, 1)) for r in rows if getattr(r, name) is not None]
    if not pairs:
        return None
    return float(sum(v * n for v, n in pairs) / sum(n for _, n in pairs))


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
        rows = _hourly_rows(conn, scope.counted, prev_start, now)
        factor_ids |= {r.emission_factor_id for r in rows if r.emission_factor_id is not None}
        cur = _figures([r for r in rows if r.hour_start >= start], start, now)
        prev = _figures(
            [r for r in rows if prev_start <= r.hour_start < prev_end], prev_start, prev_end
        )
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


def _figures(rows: list[Any], start: datetime, end: datetime) -> schemas.PeriodFigures:
    return schemas.PeriodFigures(
        start=start,
        end=end,
        energy_kwh=sum(r.energy_kwh for r in rows),
        co2_location_kg=sum(r.co2_kg for r in rows),
    )
