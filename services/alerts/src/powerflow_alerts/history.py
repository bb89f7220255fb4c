"""The figures the base-load and daily rules judge, read through the one totals module.

A subject's hours and days come from ``queries.period_sums`` over hourly_stats, the SQL every
chart and report uses, so an alert's kWh is the kWh the dashboard shows for that day.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, select

from powerflow_common.alert_rules import (
    HISTORY_DAYS,
    BaseLoadParams,
    DailyParams,
    FittedBaselines,
    Verdict,
    base_load_verdict,
    base_load_w,
    comparison_days,
    daily_verdict,
    knows_holidays,
    night_bounds_utc,
)
from powerflow_common.alerts_store import RuleRow
from powerflow_common.db.models import DEVICES, SITES
from powerflow_common.logs import get_logger
from powerflow_common.periods import period_bounds_utc
from powerflow_common.queries import TotalsScope, load_scope, period_sums

log = get_logger(__name__)


def _scope(conn: Connection, rule: RuleRow, default_tz: str) -> tuple[TotalsScope, str]:
    """The rule's totals scope and the country whose holidays apply."""
    if rule.scope == "site":
        scope = load_scope(conn, "site", default_tz=default_tz, site_id=rule.site_id)
        region = conn.execute(select(SITES.c.region).where(SITES.c.id == rule.site_id)).scalar()
    else:
        device = conn.execute(
            select(DEVICES.c.code, DEVICES.c.site_id).where(DEVICES.c.id == rule.device_id)
        ).one()
        scope = load_scope(conn, "device", default_tz=default_tz, device_code=device.code)
        region = (
            conn.execute(select(SITES.c.region).where(SITES.c.id == device.site_id)).scalar()
            if device.site_id is not None
            else None
        )
    return scope, str(region or "KR")


def subject_timezone(engine: Engine, rule: RuleRow, default_tz: str) -> str:
    with engine.connect() as conn:
        return _scope(conn, rule, default_tz)[0].timezone


def latest_complete_night(now: datetime, tz: str) -> date:
    """The local date of the last night window that has ended by ``now``."""
    today = now.astimezone(ZoneInfo(tz)).date()
    return today if night_bounds_utc(today, tz)[1] <= now else today - timedelta(days=1)


def latest_complete_day(now: datetime, tz: str) -> date:
    """Yesterday, local time: the last day that has ended by ``now``."""
    return now.astimezone(ZoneInfo(tz)).date() - timedelta(days=1)


def base_load_check(
    engine: Engine, rule: RuleRow, night_of: date, default_tz: str
) -> Verdict | None:
    """The verdict on the night of ``night_of`` against the 28 nights before it."""
    assert isinstance(rule.params, BaseLoadParams)
    with engine.connect() as conn:
        scope, _ = _scope(conn, rule, default_tz)
        tz = scope.timezone
        first, _ = night_bounds_utc(night_of - timedelta(days=HISTORY_DAYS), tz)
        _, last = night_bounds_utc(night_of, tz)
        rows, _ = period_sums(conn, scope, "hour", first, last)
    by_hour = {r.start: r for r in rows}

    def night(d: date) -> float | None:
        start, end = night_bounds_utc(d, tz)
        hours = []
        at = start
        while at < end:
            r = by_hour.get(at)
            if r is not None and r.device_hours:
                hours.append((r.demand_sum_w, r.coverage_sum / r.device_hours))
            at += timedelta(hours=1)
        return base_load_w(hours, int((end - start).total_seconds() // 3600))

    tonight = night(night_of)
    if tonight is None:
        return None
    history = [
        w
        for n in range(HISTORY_DAYS, 0, -1)
        if (w := night(night_of - timedelta(days=n))) is not None
    ]
    verdict = base_load_verdict(tonight, history, rule.params)
    if verdict is None:
        return None
    return Verdict(
        verdict.firing,
        {**verdict.evidence, "night_of": night_of.isoformat(), "window": "01:00-05:00 " + tz},
    )


def daily_check(
    engine: Engine,
    rule: RuleRow,
    day: date,
    default_tz: str,
    baselines: FittedBaselines,
) -> Verdict | None:
    """The verdict on local ``day`` against the same day type of the 28 days before it."""
    assert isinstance(rule.params, DailyParams)
    with engine.connect() as conn:
        scope, country = _scope(conn, rule, default_tz)
        tz = scope.timezone
        noon = datetime(day.year, day.month, day.day, 12, tzinfo=ZoneInfo(tz))
        _, end = period_bounds_utc("day", noon, tz)
        start, _ = period_bounds_utc("day", noon - timedelta(days=HISTORY_DAYS), tz)
        rows, _ = period_sums(conn, scope, "day", start, end)
    by_day = {r.start.astimezone(ZoneInfo(tz)).date(): r for r in rows}
    today = by_day.get(day)
    if today is None or not today.hours:
        return None
    history = [by_day[d].energy_kwh for d in comparison_days(day, country) if d in by_day]
    expected = baselines.expected_day(rule.site_id, day) if rule.site_id is not None else None
    verdict = daily_verdict(rule.kind, today.energy_kwh, history, rule.params, expected)
    if verdict is None:
        return None
    evidence = {**verdict.evidence, "day": day.isoformat(), "timezone": tz}
    if not knows_holidays(country):
        # Said, not assumed: the day types are weekends only for this region.
        log.warning("alerts_no_holiday_calendar", region=country, rule_id=rule.id)
        evidence["holidays"] = f"none known for region {country}: weekends only"
    return Verdict(verdict.firing, evidence)
