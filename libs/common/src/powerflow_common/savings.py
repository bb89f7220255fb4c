"""A site's baselines and savings from the database: outdoor series, daily kWh, stored models.

``powerflow_common.baselines`` does the statistics (pure); this module loads what it needs:

- **daily kWh** of the site, as the totals sum them (``queries.period_sums``: main meters, or
  standalone ones), in the site's local days. A day is *usable* when every hour of it has
  data, the mean coverage is at least ``MIN_DAY_COVERAGE`` and no energy of unknown timing
  (``unallocated_kwh``) fell in it.
- **outdoor temperature**: from devices marked outdoor (``outdoor_sensors``) that sit on the
  site now, derived from their hourly_stats when read (a day needs
  ``outdoor_min_hours_per_day`` hours: the hours already exist and a recomputed hour
  changes the day with no cache to refresh); or imported daily means
  (``outdoor_temperature_days``, a weather station: nothing in the database to derive
  them from). A fit uses one source (the one with more days in the period, the station on a
  tie) and the baseline stores it: savings apply the model to the same series.

``site_savings`` is the one function a report calls: a site, a period, and the savings as
plain numbers with their uncertainty.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import Connection, Engine, delete, func, select

from powerflow_common.baselines import (
    BaselineModel,
    BaselineRefused,
    Coefficient,
    DailyPoint,
    FitStats,
    ModelKind,
    OutdoorSeriesMissing,
    Savings,
    compute_savings,
    fit_baseline,
)
from powerflow_common.db.dialect import begin_write
from powerflow_common.db.models import (
    BASELINES,
    DEVICES,
    HOURLY_STATS,
    OUTDOOR_SENSORS,
    OUTDOOR_TEMPERATURE_DAYS,
    SITES,
)
from powerflow_common.logs import get_logger
from powerflow_common.queries import ScopeNotFound, load_scope, period_sums
from powerflow_common.settings import Settings
from powerflow_common.validation import canonical_device_code
from powerflow_common.weather import WeatherDay

__all__ = [
    "MIN_DAY_COVERAGE",
    "TEMPERATURE_SOURCES",
    "DayRange",
    "OutdoorSummary",
    "SiteSavings",
    "StoredBaseline",
    "TemperatureSource",
    "baseline_days",
    "fit_site_baseline",
    "import_weather",
    "latest_baseline",
    "list_baselines",
    "load_baseline",
    "mark_outdoor",
    "outdoor_devices",
    "outdoor_summary",
    "site_points",
    "site_savings",
    "site_timezone",
]

log = get_logger(__name__)

TemperatureSource = Literal["device", "weather"]
TEMPERATURE_SOURCES: tuple[TemperatureSource, ...] = ("device", "weather")
MIN_DAY_COVERAGE = 0.9
# Days a period may name (every local midnight converts to UTC without overflow).
FIRST_DAY = date(1971, 1, 1)
LAST_DAY = date(2199, 12, 31)


@dataclass(frozen=True, slots=True)
class DayRange:
    """Local days of a site, both ends inclusive."""

    first: date
    last: date

    @classmethod
    def from_exclusive(cls, start: date, end: date) -> DayRange:
        """Days ``start`` up to ``end`` excluded (a report's period: ``--to`` is exclusive)."""
        return cls(start, end - timedelta(days=1))

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def check(self, max_days: int) -> DayRange:
        if self.last < self.first:
            raise BaselineRefused("bad_period", "The period ends before it starts.")
        if self.first < FIRST_DAY or self.last > LAST_DAY:
            raise BaselineRefused(
                "bad_period", f"Days must lie between {FIRST_DAY} and {LAST_DAY}."
            )
        if self.days > max_days:
            raise BaselineRefused(
                "period_too_long",
                f"The period has {self.days} days; at most {max_days} "
                "(setting baseline_max_period_days).",
            )
        return self

    def utc(self, tz: str) -> tuple[datetime, datetime]:
        zone = ZoneInfo(tz)
        lo = datetime.combine(self.first, time(), zone).astimezone(UTC)
        hi = datetime.combine(self.last + timedelta(days=1), time(), zone).astimezone(UTC)
        return lo, hi


def _site_timezone(conn: Connection, site_id: int) -> str:
    tz = conn.execute(select(SITES.c.timezone).where(SITES.c.id == site_id)).scalar()
    if tz is None:
        raise ScopeNotFound(f"No site with id {site_id}.")
    return str(tz)


# --- outdoor series --------------------------------------------------------------------------


def mark_outdoor(conn: Connection, code: str, *, outdoor: bool, by: str | None) -> bool:
    """Mark (or unmark) a device outdoor; False when nothing changed. ScopeNotFound if unknown."""
    device_id = conn.execute(
        select(DEVICES.c.id).where(DEVICES.c.code == canonical_device_code(code))
    ).scalar()
    if device_id is None:
        raise ScopeNotFound(f"No device with code {code!r}.")
    marked = conn.execute(
        select(OUTDOOR_SENSORS.c.device_id).where(OUTDOOR_SENSORS.c.device_id == device_id)
    ).first()
    if outdoor == (marked is not None):
        return False
    if outdoor:
        conn.execute(
            OUTDOOR_SENSORS.insert().values(
                device_id=device_id, marked_at=datetime.now(UTC), marked_by=by
            )
        )
    else:
        conn.execute(delete(OUTDOOR_SENSORS).where(OUTDOOR_SENSORS.c.device_id == device_id))
    return True


def outdoor_devices(conn: Connection, site_id: int) -> list[tuple[int, str]]:
    """(id, code) of the devices marked outdoor that sit on the site now."""
    rows = conn.execute(
        select(DEVICES.c.id, DEVICES.c.code)
        .join(OUTDOOR_SENSORS, OUTDOOR_SENSORS.c.device_id == DEVICES.c.id)
        .where(DEVICES.c.site_id == site_id)
        .order_by(DEVICES.c.code)
    )
    return [(r.id, r.code) for r in rows]


@dataclass(frozen=True, slots=True)
class OutdoorSummary:
    """Where a site's outdoor temperature can come from."""

    devices: list[str]  # codes marked outdoor, on the site now
    weather_days: int
    weather_first: date | None
    weather_last: date | None
    weather_sources: list[str]  # "kma-asos:108", at most 20


def outdoor_summary(conn: Connection, site_id: int) -> OutdoorSummary:
    """The site's outdoor devices and imported weather days; ScopeNotFound if no site."""
    _site_timezone(conn, site_id)
    t = OUTDOOR_TEMPERATURE_DAYS
    n, first, last = conn.execute(
        select(func.count(), func.min(t.c.day), func.max(t.c.day)).where(t.c.site_id == site_id)
    ).one()
    sources = conn.execute(
        select(t.c.source).distinct().where(t.c.site_id == site_id).limit(20)
    ).scalars()
    return OutdoorSummary(
        devices=[code for _, code in outdoor_devices(conn, site_id)],
        weather_days=int(n),
        weather_first=first,
        weather_last=last,
        weather_sources=sorted(sources),
    )


def site_timezone(conn: Connection, site_id: int) -> str:
    """The site's timezone; ScopeNotFound if there is no such site."""
    return _site_timezone(conn, site_id)


def import_weather(conn: Connection, site_id: int, days: Sequence[WeatherDay]) -> int:
    """Store a station's daily means for the site, replacing the days the file covers."""
    _site_timezone(conn, site_id)
    if not days:
        return 0
    t = OUTDOOR_TEMPERATURE_DAYS
    conn.execute(
        delete(t).where(
            t.c.site_id == site_id,
            t.c.day >= min(d.day for d in days),
            t.c.day <= max(d.day for d in days),
        )
    )
    now = datetime.now(UTC)
    conn.execute(
        t.insert(),
        [
            {
                "site_id": site_id,
                "day": d.day,
                "temperature_mean_c": d.temperature_mean_c,
                "source": f"kma-asos:{d.station}"[:64],
                "imported_at": now,
            }
            for d in days
        ],
    )
    return len(days)


def _weather_days(conn: Connection, site_id: int, days: DayRange) -> dict[date, float]:
    t = OUTDOOR_TEMPERATURE_DAYS
    rows = conn.execute(
        select(t.c.day, t.c.temperature_mean_c).where(
            t.c.site_id == site_id, t.c.day >= days.first, t.c.day <= days.last
        )
    )
    return {r.day: float(r.temperature_mean_c) for r in rows}


def _device_days(
    conn: Connection, site_id: int, tz: str, days: DayRange, min_hours: int
) -> dict[date, float]:
    ids = [i for i, _ in outdoor_devices(conn, site_id)]
    if not ids:
        return {}
    lo, hi = days.utc(tz)
    h = HOURLY_STATS
    zone = ZoneInfo(tz)
    per_day: dict[date, dict[datetime, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in conn.execute(
        select(h.c.hour_start, h.c.temperature_avg_c).where(
            h.c.device_id.in_(ids),
            h.c.hour_start >= lo,
            h.c.hour_start < hi,
            h.c.temperature_avg_c.is_not(None),
        )
    ):
        per_day[r.hour_start.astimezone(zone).date()][r.hour_start].append(r.temperature_avg_c)
    out = {}
    for day, hours in per_day.items():
        if len(hours) >= min_hours:  # each hour the mean of the site's outdoor devices
            means = [sum(v) / len(v) for v in hours.values()]
            out[day] = sum(means) / len(means)
    return out


def _outdoor_days(
    conn: Connection,
    site_id: int,
    tz: str,
    days: DayRange,
    source: TemperatureSource | None,
    min_hours: int,
) -> tuple[TemperatureSource, dict[date, float]]:
    found: dict[TemperatureSource, dict[date, float]] = {}
    if source in (None, "weather"):
        found["weather"] = _weather_days(conn, site_id, days)
    if source in (None, "device"):
        found["device"] = _device_days(conn, site_id, tz, days, min_hours)
    best = max(found, key=lambda s: (len(found[s]), s == "weather"))
    if not found[best]:
        has_weather = conn.execute(
            select(OUTDOOR_TEMPERATURE_DAYS.c.day)
            .where(OUTDOOR_TEMPERATURE_DAYS.c.site_id == site_id)
            .limit(1)
        ).first()
        if has_weather is None and not outdoor_devices(conn, site_id):
            raise OutdoorSeriesMissing()
        what = {
            "weather": "imported weather",
            "device": "the site's outdoor devices",
            None: "imported weather or the site's outdoor devices",
        }[source]
        raise OutdoorSeriesMissing(
            f"No outdoor temperature from {what} covers {days.first} .. {days.last} (a device "
            f"day needs {min_hours} hours). Indoor temperature follows the HVAC, so it is no "
            "independent variable: import a weather CSV for these days or choose a period "
            "the outdoor series covers."
        )
    return best, found[best]


# --- daily kWh -------------------------------------------------------------------------------


def _energy_days(
    conn: Connection, site_id: int, tz: str, days: DayRange, default_tz: str
) -> dict[date, float]:
    """The site's usable days: every hour with data, coverage >= 0.9, no unallocated kWh."""
    scope = load_scope(conn, "site", default_tz=default_tz, site_id=site_id)
    lo, hi = days.utc(tz)
    sums, _ = period_sums(conn, dataclasses.replace(scope, contracts={}), "day", lo, hi)
    zone = ZoneInfo(tz)
    out = {}
    for part in sums:
        day_hours = round((part.end - part.start).total_seconds() / 3600)
        coverage = part.coverage_sum / part.device_hours if part.device_hours else 0.0
        if part.hours >= day_hours and coverage >= MIN_DAY_COVERAGE and not part.unallocated_kwh:
            out[part.start.astimezone(zone).date()] = part.energy_kwh
    return out


def site_points(
    conn: Connection,
    settings: Settings,
    site_id: int,
    days: DayRange,
    source: TemperatureSource | None = None,
) -> tuple[TemperatureSource, list[DailyPoint]]:
    """The site's usable days with kWh and outdoor temperature; OutdoorSeriesMissing if none."""
    tz = _site_timezone(conn, site_id)
    used, temps = _outdoor_days(conn, site_id, tz, days, source, settings.outdoor_min_hours_per_day)
    kwh = _energy_days(conn, site_id, tz, days, settings.organisation_timezone)
    points = [DailyPoint(d, temps[d], kwh[d]) for d in sorted(temps.keys() & kwh.keys())]
    return used, points


# --- stored baselines ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredBaseline:
    id: int
    site_id: int
    period: DayRange
    temperature_source: TemperatureSource
    model: BaselineModel
    fitted_at: datetime
    fitted_by: str | None


def _model_json(model: BaselineModel) -> tuple[dict[str, Any], dict[str, Any]]:
    coefficients = {
        "intercept_kwh": model.intercept_kwh,
        "heating_slope_kwh_per_c": model.heating_slope_kwh_per_c,
        "cooling_slope_kwh_per_c": model.cooling_slope_kwh_per_c,
        "heating_change_point_c": model.heating_change_point_c,
        "cooling_change_point_c": model.cooling_change_point_c,
        "terms": [dataclasses.asdict(c) for c in model.coefficients],
    }
    stats = {
        **dataclasses.asdict(model.stats),
        "temperature_min_c": model.temperature_min_c,
        "temperature_max_c": model.temperature_max_c,
        "sufficiency": model.sufficiency,
    }
    return coefficients, stats


def _from_row(r: Any) -> StoredBaseline:
    c, s = dict(r.coefficients), dict(r.stats)
    extra = {k: s.pop(k) for k in ("temperature_min_c", "temperature_max_c", "sufficiency")}
    model = BaselineModel(
        kind=r.model_kind,
        intercept_kwh=c["intercept_kwh"],
        heating_slope_kwh_per_c=c["heating_slope_kwh_per_c"],
        cooling_slope_kwh_per_c=c["cooling_slope_kwh_per_c"],
        heating_change_point_c=c["heating_change_point_c"],
        cooling_change_point_c=c["cooling_change_point_c"],
        coefficients=tuple(Coefficient(**t) for t in c["terms"]),
        stats=FitStats(**s),
        **extra,
    )
    return StoredBaseline(
        id=r.id,
        site_id=r.site_id,
        period=DayRange(r.period_start, r.period_end),
        temperature_source=r.temperature_source,
        model=model,
        fitted_at=r.fitted_at,
        fitted_by=r.fitted_by,
    )


def fit_site_baseline(
    engine: Engine,
    settings: Settings,
    site_id: int,
    days: DayRange,
    *,
    source: TemperatureSource | None = None,
    kinds: Sequence[ModelKind] | None = None,
    by: str | None = None,
) -> StoredBaseline:
    """Fit the site's baseline on ``days`` and store it.

    The days are read and the model fitted outside any write transaction (a fit of years
    of days takes a moment; SQLite's one write lock is not held for it), then stored.
    """
    days.check(settings.baseline_max_period_days)
    with engine.connect() as conn:
        used, points = site_points(conn, settings, site_id, days, source)
    extra = {} if kinds is None else {"kinds": kinds}
    model = fit_baseline(
        points,
        days.days,
        min_days=settings.baseline_min_days,
        min_span_c=settings.baseline_min_temperature_span_c,
        min_share=settings.baseline_min_usable_share,
        **extra,
    )
    coefficients, stats = _model_json(model)
    now = datetime.now(UTC)
    with begin_write(engine) as conn:
        _site_timezone(conn, site_id)  # still there
        new_id = conn.execute(
            BASELINES.insert().values(
                site_id=site_id,
                period_start=days.first,
                period_end=days.last,
                temperature_source=used,
                model_kind=model.kind,
                coefficients=coefficients,
                stats=stats,
                fitted_at=now,
                fitted_by=by,
            )
        ).inserted_primary_key
    assert new_id is not None
    log.info(
        "baseline_fitted",
        site_id=site_id,
        baseline_id=int(new_id[0]),
        kind=model.kind,
        source=used,
        days=model.stats.n_days,
        cv_rmse_pct=round(model.stats.cv_rmse_pct, 2),
    )
    return StoredBaseline(int(new_id[0]), site_id, days, used, model, now, by)


def load_baseline(conn: Connection, baseline_id: int) -> StoredBaseline:
    row = conn.execute(select(BASELINES).where(BASELINES.c.id == baseline_id)).first()
    if row is None:
        raise ScopeNotFound(f"No baseline with id {baseline_id}.")
    return _from_row(row)


def list_baselines(conn: Connection, site_id: int, limit: int) -> list[StoredBaseline]:
    """The site's baselines, newest first; ScopeNotFound if there is no such site."""
    _site_timezone(conn, site_id)
    rows = conn.execute(
        select(BASELINES)
        .where(BASELINES.c.site_id == site_id)
        .order_by(BASELINES.c.fitted_at.desc(), BASELINES.c.id.desc())
        .limit(limit)
    )
    return [_from_row(r) for r in rows]


def latest_baseline(conn: Connection, site_id: int) -> StoredBaseline:
    _site_timezone(conn, site_id)
    row = conn.execute(
        select(BASELINES)
        .where(BASELINES.c.site_id == site_id)
        .order_by(BASELINES.c.fitted_at.desc(), BASELINES.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        raise ScopeNotFound(f"Site {site_id} has no baseline yet: fit one first.")
    return _from_row(row)


def baseline_days(
    conn: Connection, settings: Settings, stored: StoredBaseline
) -> list[tuple[DailyPoint, float]]:
    """The baseline period's usable days now, each with the model's prediction."""
    try:
        _, points = site_points(
            conn, settings, stored.site_id, stored.period, stored.temperature_source
        )
    except OutdoorSeriesMissing:
        # The outdoor series went since the fit: the model stands, without its days.
        log.warning("baseline_days_missing", baseline_id=stored.id, site_id=stored.site_id)
        return []
    if not points:
        return []
    predicted = stored.model.predict(np.array([p.temperature_c for p in points]))
    return [(p, float(y)) for p, y in zip(points, predicted, strict=True)]


# --- savings ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SiteSavings:
    """Savings of a site over a period against a stored baseline: plain numbers."""

    baseline: StoredBaseline
    period: DayRange
    savings: Savings
    days_missing: int  # days of the period without kWh or outdoor temperature
    overlaps_baseline: bool  # savings inside the baseline period are ~0 by construction


def site_savings(
    conn: Connection,
    settings: Settings,
    site_id: int,
    days: DayRange,
    *,
    baseline_id: int | None = None,
) -> SiteSavings:
    """The site's savings over ``days`` (inclusive local days) against its latest baseline
    (or ``baseline_id``): daily, CUSUM, total with its uncertainty at savings_confidence.

    Raises ScopeNotFound (no site or baseline) and BaselineRefused (no usable day).
    """
    days.check(settings.baseline_max_period_days)
    stored = (
        latest_baseline(conn, site_id) if baseline_id is None else load_baseline(conn, baseline_id)
    )
    if stored.site_id != site_id:
        raise ScopeNotFound(f"Baseline {stored.id} is not site {site_id}'s.")
    _, points = site_points(conn, settings, site_id, days, stored.temperature_source)
    result = compute_savings(stored.model, points, confidence=settings.savings_confidence)
    return SiteSavings(
        baseline=stored,
        period=days,
        savings=result,
        days_missing=days.days - len(points),
        overlaps_baseline=days.first <= stored.period.last and stored.period.first <= days.last,
    )
