"""Statistics from hourly_stats: energy, CO2 (location- and market-based), power, environment.

Hours are UTC in storage; days, weeks and months are cut in the scope's timezone by
powerflow_common.periods. Which devices count at which hour, and Scope 2, are decided by
powerflow_common.totals (one rule for the API and the reports) and summed by the database
through powerflow_common.queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import Connection

from powerflow_api import schemas
from powerflow_api.data import device_rows, factors_by_id
from powerflow_api.problems import ApiError
from powerflow_common import daily_site
from powerflow_common.admission import waiting_count, waiting_devices
from powerflow_common.bounds import MAX_ROW_ID, MIN_ROW_ID, utc_in_bounds
from powerflow_common.db.dialect import LockNotAcquired
from powerflow_common.logs import get_logger
from powerflow_common.periods import Period, bucket_start_local, period_bounds_utc
from powerflow_common.queries import (
    PeriodSums,
    ScopeNotFound,
    TotalsScope,
    load_scope,
    period_sums,
    range_sums,
)
from powerflow_common.settings import Settings
from powerflow_common.totals import (
    NO_CONTRACTS_NOTE,
    Scope2,
    SiteEnergy,
    contracted_by_site,
    scope2_by_site,
)

log = get_logger(__name__)

ScopeKind = Literal["device", "site", "organisation"]
# The overview lists this many waiting devices, the most recently seen (their count is exact).
WAITING_IN_SUMMARY = 20

# A chart answered from hourly_stats rebuilds its site's days unless another copy already is.
DAILY_REBUILD_LOCK_TIMEOUT_S = 2.0

DEFAULT_SPAN: dict[str, timedelta] = {
    "hour": timedelta(hours=48),
    "day": timedelta(days=31),
    "week": timedelta(weeks=12),
    "month": timedelta(days=366),
}
# Each answer is one grouped query whatever the span; the limits bound its rows (at most
# ~750 hours, ~800 days, ~115 weeks, ~120 months) and the hourly rows the database reads.
MAX_SPAN: dict[str, timedelta] = {
    "hour": timedelta(days=31),
    "day": timedelta(days=800),
    "week": timedelta(days=800),
    "month": timedelta(days=3700),
}


@dataclass(slots=True)
class Scope:
    """What a statistic covers, as the API names it, and the shared module's view of it."""

    kind: ScopeKind
    ref: str | None
    totals: TotalsScope

    @property
    def timezone(self) -> str:
        return self.totals.timezone


def resolve_scope(conn: Connection, settings: Settings, kind: ScopeKind, ref: str | None) -> Scope:
    """The scope's spans, timezone and contracts; 404 when the device or site is unknown."""
    zone = settings.organisation_timezone
    try:
        if kind == "device":
            totals = load_scope(conn, "device", default_tz=zone, device_code=ref)
        elif kind == "site":
            site_id = int(ref or 0)
            if not MIN_ROW_ID <= site_id <= MAX_ROW_ID:
                raise ScopeNotFound(f"No site with id {site_id}.")
            totals = load_scope(conn, "site", default_tz=zone, site_id=site_id)
        else:
            totals = load_scope(conn, "organisation", default_tz=zone)
    except ScopeNotFound as exc:
        raise ApiError(status_code=404, detail=str(exc)) from exc
    return Scope(kind, ref, totals)


def default_range(
    period: str, start: datetime | None, end: datetime | None
) -> tuple[datetime, datetime]:
    """[start, end) in UTC, defaulting to a span that suits the period and ending now."""
    end_utc = utc_in_bounds("end", end or datetime.now(UTC))
    start_utc = utc_in_bounds("start", start or end_utc - DEFAULT_SPAN[period])
    if end_utc <= start_utc:
        raise ApiError(status_code=400, detail="'end' must be after 'start'.")
    if end_utc - start_utc > MAX_SPAN[period]:
        raise ApiError(
            status_code=400,
            detail=f"Range too long for period={period} (at most {MAX_SPAN[period].days} days); "
            "use a longer period or narrow start/end.",
        )
    return start_utc, end_utc


def series(
    conn: Connection,
    settings: Settings,
    scope: Scope,
    period: schemas.StatsPeriod,
    start: datetime,
    end: datetime,
) -> schemas.StatsSeries:
    """The scope's statistics per period in its timezone, with totals and the factors used."""
    # A site's days from daily_site_stats when current, else from hourly_stats (and rebuilt).
    cached = daily_site.cached_period_sums(conn, scope.totals, period, start, end)
    if cached is None:
        cached = period_sums(conn, scope.totals, period, start, end)
        _rebuild_stale_days(conn, settings, scope, period)
    sums, factor_ids = cached
    single = len(scope.totals.counted_ids()) == 1
    buckets = []
    totals = schemas.StatsTotals(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, None)
    for part in sums:
        local_start = bucket_start_local(part.start, period, scope.timezone)
        bucket = _bucket(part, single, local_start, part.end.astimezone(local_start.tzinfo))
        scope2 = _scope2(scope.totals, part.sites, max(part.start, start), min(part.end, end))
        bucket.co2_market_kg = scope2.market_co2_kg
        buckets.append(bucket)
        totals.energy_kwh += bucket.energy_kwh
        totals.export_kwh += bucket.export_kwh
        totals.unallocated_kwh += bucket.unallocated_kwh
        totals.co2_location_kg += bucket.co2_location_kg
        totals.co2_market_kg += bucket.co2_market_kg
        totals.contracted_renewable_kwh += scope2.contracted_kwh
        if bucket.power_max_w is not None:
            totals.power_max_w = max(totals.power_max_w or bucket.power_max_w, bucket.power_max_w)
    counted = {
        s.device_id for s in scope.totals.spans if s.counted and s.start < end and start < s.end
    }
    codes = sorted(d.code for d in scope.totals.devices if d.id in counted)
    return schemas.StatsSeries(
        scope=scope.kind,
        scope_ref=scope.ref,
        period=period,
        timezone=scope.timezone,
        start=start,
        end=end,
        devices=codes,
        factors=factors_by_id(conn, factor_ids),
        market_note=_market_note(totals),
        totals=totals,
        buckets=buckets,
    )


def _rebuild_stale_days(
    conn: Connection, settings: Settings, scope: Scope, period: schemas.StatsPeriod
) -> None:
    """Rebuild a site's daily_site_stats when a period they serve was just read without them."""
    site_id = scope.totals.site_id
    if (
        scope.kind == "site"
        and site_id is not None
        and period in daily_site.CACHED_PERIODS
        and not daily_site.is_current(conn, scope.totals)
    ):
        # Never built, or its roles, members or timezone changed since: this answer came
        # from hourly_stats; rebuild the days so the next one is read from them.
        try:
            daily_site.rebuild_site(
                conn.engine,
                site_id,
                default_tz=settings.organisation_timezone,
                lock_timeout_s=DAILY_REBUILD_LOCK_TIMEOUT_S,
            )
        except LockNotAcquired:
            log.info("daily_site_rebuild_busy", site_id=site_id)  # another copy is at it
        except Exception:  # the answer stands; the days stay unserved until a rebuild works
            log.exception("daily_site_rebuild_failed", site_id=site_id)


def _scope2(
    scope: TotalsScope, sites: Sequence[SiteEnergy], start: datetime, end: datetime
) -> Scope2:
    """Market-based Scope 2 of [start, end): each site's contracts against its own kWh."""
    contracted = contracted_by_site(scope.contracts, start, end)
    consumed = {s.site_id: s for s in sites}
    parts = [SiteEnergy(s.site_id, s.kwh, s.co2_kg, contracted.get(s.site_id, 0.0)) for s in sites]
    # Contracts of a site without consumption in the range still count as contracted.
    parts += [
        SiteEnergy(site, 0.0, 0.0, kwh) for site, kwh in contracted.items() if site not in consumed
    ]
    return scope2_by_site(parts)


def _market_note(totals: schemas.StatsTotals) -> str:
    if totals.contracted_renewable_kwh == 0:
        return NO_CONTRACTS_NOTE
    return (
        f"{totals.contracted_renewable_kwh:.3f} kWh of contracted renewable electricity "
        "(spread evenly over each contract's days in its site's timezone) subtracted from "
        "that site's consumption; the rest at the location-based factor (no residual-mix factor)"
    )


def _bucket(part: PeriodSums, single: bool, start: datetime, end: datetime) -> schemas.StatsBucket:
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


def _weighted(part: PeriodSums, name: str) -> float | None:
    value_sum, weights = part.env[name]
    return None if weights == 0 else value_sum / weights


def summary(
    conn: Connection, settings: Settings, scope: Scope, now: datetime | None = None
) -> schemas.Summary:
    """Now W, today and this month versus the same elapsed span of the previous day/month."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    threshold = now - timedelta(seconds=settings.api_online_threshold_s)
    site_id = scope.totals.site_id if scope.kind == "site" else None
    # The admitted devices it has now (waiting ones are listed apart); power now counts the
    # devices counted now.
    devices = [r for r in device_rows(conn, site_id=site_id) if r.admitted_at is not None]
    online = [r for r in devices if r.last_seen_at >= threshold]
    counted_now = {s.device_id for s in scope.totals.spans if s.counted and s.covers(now)}
    now_w = sum(r.latest_power_w or 0.0 for r in online if r.id in counted_now)
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
        cur = _figures(conn, scope, start, now, factor_ids)
        prev = _figures(conn, scope, prev_start, prev_end, factor_ids)
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
        waiting=waiting(conn, site_id=site_id),
    )


def waiting(conn: Connection, *, site_id: int | None = None) -> schemas.Waiting:
    """Devices waiting for admission (on the site, when given), the latest seen listed."""
    listed = waiting_devices(conn, WAITING_IN_SUMMARY, site_id=site_id)
    return schemas.Waiting(
        count=waiting_count(conn, site_id=site_id)
        if len(listed) == WAITING_IN_SUMMARY
        else len(listed),
        devices=listed,
    )


def _figures(
    conn: Connection, scope: Scope, start: datetime, end: datetime, factor_ids: set[int]
) -> schemas.PeriodFigures:
    """kWh and kg CO2 (location and market) of the scope's counted hours in [start, end)."""
    sums = range_sums(conn, scope.totals, start, end)
    factor_ids |= sums.factor_ids
    scope2 = _scope2(scope.totals, sums.sites, start, end)
    return schemas.PeriodFigures(
        start=start,
        end=end,
        energy_kwh=sums.energy_kwh,
        co2_location_kg=sums.co2_kg,
        co2_market_kg=scope2.market_co2_kg,
    )
