"""The report's facts: every figure a report shows, computed by SQL and pure code, never by a model.

``load_inputs`` reads hourly_stats and the scope's devices; ``compute_facts`` is pure, one named
step per part of the report (``period_facts``, ``energy_facts`` ... ``savings_facts``), each a
function of the placed hours (``place``). Each scalar fact has an id (``total_kwh``) that the
narrative cites as a placeholder (``{{total_kwh}}``); FACT_GLOSSARY says what each one means.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, DateTime, func, select, type_coerce

from powerflow_common import costs
from powerflow_common.alert_rules import KINDS as ALERT_KINDS
from powerflow_common.baselines import BaselineRefused
from powerflow_common.db.models import ALERT_RULES, ALERTS, EMISSION_FACTORS, HOURLY_STATS, SITES
from powerflow_common.db.sqltime import bind_text
from powerflow_common.errors import NotFound
from powerflow_common.logs import get_logger
from powerflow_common.periods import period_bounds_utc
from powerflow_common.queries import (
    ScopeDevice,
    ScopeNotFound,
    TotalsScope,
    load_scope,
    span_condition,
)
from powerflow_common.savings import DayRange, site_savings
from powerflow_common.settings import Settings
from powerflow_common.tariffs import CostBreakdown
from powerflow_common.totals import SiteEnergy, Span, contracted_by_site, scope2_by_site

__all__ = [
    "BRIGHT_LUX",
    "FACT_GLOSSARY",
    "NIGHT_HOURS",
    "AlertRow",
    "CostBill",
    "Fact",
    "FactInputs",
    "FactorInfo",
    "Facts",
    "HourRow",
    "NoData",
    "PeriodHours",
    "ReportScope",
    "SiteBaselineSavings",
    "SiteCost",
    "alert_facts",
    "baseline_facts",
    "comparison_facts",
    "compute_facts",
    "cost_facts",
    "coverage_facts",
    "day_facts",
    "device_facts",
    "energy_facts",
    "environment_facts",
    "expected_device_hours",
    "factor_facts",
    "intensity_facts",
    "load_inputs",
    "period_facts",
    "place",
    "profile_facts",
    "savings_facts",
]

Kind = Literal[
    "kwh",
    "kg",
    "t",
    "gj",
    "pct",
    "pct_change",
    "w",
    "c",
    "r",
    "count",
    "m2",
    "kwh_per_m2",
    "kwh_per_c",
    "kg_per_kwh",
    "money",
    "date",
    "hour",
    "text",
]

# What each fact means, for the model (narrative.SYSTEM_PROMPT) and for people. Every fact
# compute_facts adds is named here and every name here is a fact (test_sections.py checks).
# A line names its facts before a colon (all of it without one; notes in parentheses and
# indented lines are description); ``a_kwh / _n`` is a_kwh and a_n; ``top1..5``: top1 to top5.
FACT_GLOSSARY = """\
total_kwh: electricity consumed in the period (allocated + unallocated), counted meters only
allocated_kwh / unallocated_kwh / unallocated_pct: energy timed to hours / counted across data gaps
total_gj: total_kwh in gigajoules (GRI 302-1)
co2_location_kg, co2_location_t: location-based Scope 2 emissions (GRI 305-2)
co2_market_kg, co2_market_t: market-based Scope 2 emissions after contracted renewables
contracted_renewable_kwh, renewable_covered_kwh: renewable contracts' share of the period
effective_factor_kg_per_kwh, factor_kg_per_kwh, factor_source, factor_set, factor_count
hours_without_factor: metered hours with energy but no emission factor
device_count, counted_device_count; device_top1..5_name / _kwh / _share_pct (by consumption)
avg_daily_kwh, max_day_date, max_day_kwh, min_day_date, min_day_kwh
weekday_avg_daily_kwh, weekend_avg_daily_kwh, weekend_vs_weekday_pct
night_base_load_w (mean power 00:00-05:00 local), min_hour_w, peak_hour_w, peak_hour_start,
peak_device_max_w (highest single reading of a counted meter), avg_power_w
previous_total_kwh, previous_co2_location_kg, change_kwh, change_pct (vs previous equal period)
coverage_pct, hours_with_data, missing_device_hours, gap_device_hours
floor_area_m2, intensity_kwh_per_m2 (GRI 302-3)
corr_temperature_r / _n, corr_humidity_r / _n, corr_brightness_r / _n (hourly power, Pearson)
daily_kwh_per_c_slope, daily_temperature_n (least squares of daily kWh on mean temperature)
savings_night_base_kwh / _kg / _pct: night base load above the period's lowest hour
savings_bright_lighting_kwh / _kg / _pct: energy above each light-sensing meter's floor in
  hours with at least 500 lux
period_start_date, period_end_date, period_days, period_hours, scope_label, timezone
cost1..3_currency / _site_count / _kwh / _energy_charge / _addons / _fund / _vat: per currency
  (ISO code; by code; never added across currencies), the period's costed kWh and their cost
cost1..3_energy_related_total: energy charge + add-ons + fund + VAT (no demand or fixed charge)
cost1..3_currency / _bill_months / _bill_demand_charge / _bill_total: whole local months' bills
cost_currency_count, cost_uncosted_kwh (kWh of hours without a tariff, at any site)
cost_untariffed_site_count, cost_untariffed_sites (names of sites without a tariff)
cost_untariffed_kwh (the kWh of the sites without a tariff only)
baseline1..5_site / _id / _model / _period_start / _period_end: per site with savings
baseline1..5_days / _cv_rmse_pct / _nmbe_pct: reporting days used; the baseline's fit
baseline1..5_days / _savings_kwh / _savings_pct / _uncertainty_kwh / _uncertainty_pct
baseline1..5_confidence_pct: savings = baseline prediction - actual, +/- the uncertainty at it
baseline_site_count, baseline_missing_site_count, baseline_missing_sites (no baseline or days)
alerts_count, alerts_open_count, alerts_cleared_count (active in the period; state at its end)
alerts_silence_count, alerts_power_above_count, alerts_power_below_count
alerts_base_load_jump_count, alerts_daily_kwh_above_count, alerts_daily_kwh_below_count
alert1..3_kind / _subject / _status: open ones first, then the latest raised
alert1..3_raised_at: when it was raised (local time)
"""

log = get_logger(__name__)

# Local hours [0, 5) count as night for the base-load rule.
NIGHT_HOURS = range(0, 5)
# An hour whose light sensor averaged at least this is daylight for the lighting rule.
BRIGHT_LUX = 500.0
GJ_PER_KWH = 0.0036
TOP_DEVICES = 5
MAX_SCATTER_POINTS = 800
_HOUR = timedelta(hours=1)


class NoData(NotFound, ValueError):
    """The scope has no devices or no hourly data in the period: a permanent report error."""


@dataclass(frozen=True, slots=True)
class HourRow:
    """The parts of one hourly_stats row that facts use."""

    device_id: int
    hour_start: datetime  # UTC
    energy_kwh: float
    unallocated_kwh: float
    coverage: float
    co2_kg: float
    emission_factor_id: int | None
    power_max_w: float | None = None
    temperature_c: float | None = None
    humidity_pct: float | None = None
    brightness_lux: float | None = None
    # Where the hour belongs (powerflow_common.totals): None follows the device's own
    # site_id and whether it counts in the period, as when a device never moved.
    site_id: int | None = None
    counted: bool | None = None


@dataclass(frozen=True, slots=True)
class FactorInfo:
    """An emission factor used by the period's hours."""

    id: int
    factor_set: str
    region: str
    kg_co2e_per_kwh: float
    source: str
    method: str


@dataclass(frozen=True, slots=True)
class CostBill:
    """A bill of one whole local month of a site (powerflow_common.costs.site_bill)."""

    month: str  # YYYY-MM
    tariff: str
    billed_demand_kw: float | None
    demand_charge: float
    energy_charge: float
    addons: float  # the bill's add-ons (climate-environment, fuel-cost adjustment ...)
    fixed_charge: float
    fund: float
    vat: float
    total: float


@dataclass(frozen=True, slots=True)
class SiteCost:
    """A site's cost of the period's counted kWh (powerflow_common.costs), or why there is none.

    ``currency`` None: no tariff for any hour of the period (``reason`` says why); the site's
    kWh are then all in ``uncosted_kwh``.
    """

    site_id: int
    site_name: str
    currency: str | None
    kwh: float = 0.0  # costed kWh
    energy_charge: float = 0.0
    addons: float = 0.0
    fund: float = 0.0
    vat: float = 0.0
    energy_related_total: float = 0.0
    uncosted_kwh: float = 0.0
    bills: tuple[CostBill, ...] = ()
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class SiteBaselineSavings:
    """A site's savings over the period against its baseline (powerflow_common.savings), or why
    there are none (``reason``: no baseline fitted, no usable day ...; the numbers are then 0)."""

    site_id: int
    site_name: str
    reason: str | None = None
    baseline_id: int | None = None
    model: str | None = None
    baseline_first: date | None = None
    baseline_last: date | None = None
    cv_rmse_pct: float | None = None
    nmbe_pct: float | None = None
    days: int = 0
    savings_kwh: float | None = None
    savings_pct: float | None = None
    uncertainty_kwh: float | None = None
    uncertainty_pct: float | None = None
    confidence: float | None = None  # a fraction, e.g. 0.9


@dataclass(frozen=True, slots=True)
class AlertRow:
    """An alert active in the period, with what it is about as people call it."""

    id: int
    kind: str
    rule_name: str
    subject: str  # a device's label or a site's name (untrusted text)
    raised_at: datetime  # UTC
    cleared_at: datetime | None  # UTC; None or after the period's end: open at its end


@dataclass(frozen=True, slots=True)
class FactInputs:
    """Everything ``compute_facts`` needs, loaded from the database or built by a test."""

    scope: str  # organisation, site or devices
    scope_label: str
    tz: str
    start_utc: datetime
    end_utc: datetime
    devices: Sequence[ScopeDevice]
    # The devices that add to the total in some hour of the period.
    counted_ids: frozenset[int]
    rows: Sequence[HourRow]
    previous_rows: Sequence[HourRow]
    factors: Sequence[FactorInfo]
    floor_area_m2: float | None = None
    # Cost, savings against a baseline and alerts of the period (load_extras); empty: none.
    costs: Sequence[SiteCost] = ()
    baselines: Sequence[SiteBaselineSavings] = ()
    alerts: Sequence[AlertRow] = ()
    alerts_truncated: bool = False  # more than MAX_ALERTS_LOADED: the first ones only
    # Each site's renewable contracts' kWh in the period (its own local days).
    contracted_kwh_by_site: Mapping[int | None, float] = field(default_factory=dict)
    # Hours the counted devices were counted (a moved device only part of the period);
    # None: every counted device for the whole period.
    counted_device_hours: int | None = None


@dataclass(frozen=True, slots=True)
class Fact:
    """One figure: its id, value (None when it cannot be computed) and kind (how to format it)."""

    id: str
    value: float | int | str | None
    kind: Kind


@dataclass(slots=True)
class Facts:
    """Scalar facts by id, and the tables charts and appendices draw from."""

    values: dict[str, Fact] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    # What the report covers (organisation, site or devices): scope_label is a site's name
    # (free text) only for a site.
    scope: str = ""

    def add(self, fact_id: str, value: float | int | str | None, kind: Kind) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        self.values[fact_id] = Fact(fact_id, value, kind)

    def extend(self, other: Facts) -> None:
        """Add ``other``'s facts, tables and notes after these."""
        self.values.update(other.values)
        self.tables.update(other.tables)
        self.notes.update(other.notes)

    def value(self, fact_id: str) -> float | int | str | None:
        return self.values[fact_id].value

    def number(self, fact_id: str) -> float | None:
        """The fact's numeric value, or None."""
        v = self.values[fact_id].value
        return float(v) if isinstance(v, int | float) else None


@dataclass(frozen=True, slots=True)
class PeriodHours:
    """The period's hours of the scope, placed, with the sums several steps read (``place``).

    The steps read it and never change it (its lists and dicts are shared between them).
    """

    zone: ZoneInfo
    rows: list[HourRow]  # every device of the scope, each row with its site and counting
    counted: list[HourRow]  # the rows that add to the total
    previous: list[HourRow]  # the previous period's counted rows
    allocated_kwh: float
    unallocated_kwh: float
    co2_kg: float
    # Counted energy timed to hours (allocated: its timing is known), by UTC hour.
    hour_kwh: dict[datetime, float]
    # Counted energy (allocated and not) and emissions by local day; temperatures by local day.
    day_kwh: dict[date, float]
    day_co2: dict[date, float]
    temps_by_day: dict[date, list[float]]

    @property
    def total_kwh(self) -> float:
        return self.allocated_kwh + self.unallocated_kwh

    @property
    def effective_factor(self) -> float | None:
        """kg CO2e per kWh over the period's counted energy."""
        total = self.total_kwh
        return self.co2_kg / total if total > 0 else None


def compute_facts(inputs: FactInputs) -> Facts:
    """Every fact of the report from its inputs (pure); raises NoData when there is nothing.

    One named step per part of the report, each a pure function of the placed hours.
    """
    hours = place(inputs)
    facts = Facts(scope=inputs.scope)
    for part in (
        period_facts(inputs),
        energy_facts(hours, inputs.contracted_kwh_by_site),
        factor_facts(hours, inputs.factors),
        device_facts(inputs.devices, inputs.counted_ids, hours),
        day_facts(hours),
        profile_facts(hours),
        comparison_facts(hours),
        coverage_facts(hours, expected_device_hours(inputs)),
        intensity_facts(hours.total_kwh, inputs.floor_area_m2),
        environment_facts(hours),
        savings_facts(hours),
        cost_facts(inputs.costs),
        baseline_facts(inputs.baselines),
        alert_facts(inputs.alerts, ZoneInfo(inputs.tz), inputs.end_utc, inputs.alerts_truncated),
    ):
        facts.extend(part)
    return facts


def place(inputs: FactInputs) -> PeriodHours:
    """The period's rows with their site and counting decided, and the sums the steps share."""
    if not any(d.id in inputs.counted_ids for d in inputs.devices):
        raise NoData("no device in the scope counts towards its total")
    by_id = {d.id: d for d in inputs.devices}
    rows = [
        _placed(r, by_id[r.device_id], inputs.counted_ids)
        for r in inputs.rows
        if inputs.start_utc <= r.hour_start < inputs.end_utc and r.device_id in by_id
    ]
    counted = [r for r in rows if r.counted]
    if not counted:
        raise NoData("no hourly data for the scope in the period")
    zone = ZoneInfo(inputs.tz)
    hour_kwh: dict[datetime, float] = defaultdict(float)
    day_kwh: dict[date, float] = defaultdict(float)
    day_co2: dict[date, float] = defaultdict(float)
    for r in counted:
        hour_kwh[r.hour_start] += r.energy_kwh
        day = r.hour_start.astimezone(zone).date()
        day_kwh[day] += r.energy_kwh + r.unallocated_kwh
        day_co2[day] += r.co2_kg
    temps_by_day: dict[date, list[float]] = defaultdict(list)
    for r in rows:
        if r.temperature_c is not None:
            temps_by_day[r.hour_start.astimezone(zone).date()].append(r.temperature_c)
    previous = (
        _placed(r, by_id[r.device_id], inputs.counted_ids)
        for r in inputs.previous_rows
        if r.device_id in by_id
    )
    return PeriodHours(
        zone=zone,
        rows=rows,
        counted=counted,
        previous=[r for r in previous if r.counted],
        allocated_kwh=math.fsum(r.energy_kwh for r in counted),
        unallocated_kwh=math.fsum(r.unallocated_kwh for r in counted),
        co2_kg=math.fsum(r.co2_kg for r in counted),
        hour_kwh=hour_kwh,
        day_kwh=day_kwh,
        day_co2=day_co2,
        temps_by_day=temps_by_day,
    )


def _placed(row: HourRow, device: ScopeDevice, counted_ids: frozenset[int]) -> HourRow:
    """The row with its site and counting decided (a row without them follows its device)."""
    if row.counted is not None:
        return row
    return replace(row, site_id=device.site_id, counted=device.id in counted_ids)


def period_facts(inputs: FactInputs) -> Facts:
    """What the report covers: the scope's label, its time zone and the local days."""
    zone = ZoneInfo(inputs.tz)
    local_first = inputs.start_utc.astimezone(zone).date()
    local_last = (inputs.end_utc - _HOUR).astimezone(zone).date()
    facts = Facts()
    facts.add("scope_label", inputs.scope_label, "text")
    facts.add("timezone", inputs.tz, "text")
    facts.add("period_start_date", local_first.isoformat(), "date")
    facts.add("period_end_date", local_last.isoformat(), "date")
    facts.add("period_days", (local_last - local_first).days + 1, "count")
    facts.add("period_hours", (inputs.end_utc - inputs.start_utc) // _HOUR, "count")
    return facts


def energy_facts(hours: PeriodHours, contracted_kwh_by_site: Mapping[int | None, float]) -> Facts:
    """Energy and Scope 2 emissions, location- and market-based (contracts per site)."""
    total = hours.total_kwh
    facts = Facts()
    facts.add("total_kwh", total, "kwh")
    facts.add("allocated_kwh", hours.allocated_kwh, "kwh")
    facts.add("unallocated_kwh", hours.unallocated_kwh, "kwh")
    facts.add("unallocated_pct", _pct(hours.unallocated_kwh, total), "pct")
    facts.add("total_gj", total * GJ_PER_KWH, "gj")
    site_kwh: dict[int | None, float] = defaultdict(float)
    site_co2: dict[int | None, float] = defaultdict(float)
    for r in hours.counted:
        site_kwh[r.site_id] += r.energy_kwh + r.unallocated_kwh
        site_co2[r.site_id] += r.co2_kg
    scope2 = scope2_by_site(
        SiteEnergy(
            site,
            site_kwh.get(site, 0.0),
            site_co2.get(site, 0.0),
            contracted_kwh_by_site.get(site, 0.0),
        )
        for site in set(site_kwh) | set(contracted_kwh_by_site)
    )
    facts.add("co2_location_kg", hours.co2_kg, "kg")
    facts.add("co2_location_t", hours.co2_kg / 1000, "t")
    facts.add("co2_market_kg", scope2.market_co2_kg, "kg")
    facts.add("co2_market_t", scope2.market_co2_kg / 1000, "t")
    facts.add("contracted_renewable_kwh", scope2.contracted_kwh, "kwh")
    facts.add("renewable_covered_kwh", scope2.covered_kwh, "kwh")
    facts.notes["scope2"] = scope2.note
    facts.add("effective_factor_kg_per_kwh", hours.effective_factor, "kg_per_kwh")
    return facts


def factor_facts(hours: PeriodHours, factors: Sequence[FactorInfo]) -> Facts:
    """The emission factors the counted hours used, and the hours with energy but none."""
    used_ids = {r.emission_factor_id for r in hours.counted if r.emission_factor_id is not None}
    used = sorted((f for f in factors if f.id in used_ids), key=lambda f: f.id)
    facts = Facts()
    facts.add(
        "factor_kg_per_kwh", used[0].kg_co2e_per_kwh if len(used) == 1 else None, "kg_per_kwh"
    )
    facts.add("factor_source", "; ".join(f.source for f in used) or None, "text")
    facts.add("factor_set", ", ".join(sorted({f.factor_set for f in used})) or None, "text")
    facts.add("factor_count", len(used), "count")
    hours_without_factor = sum(
        1
        for r in hours.counted
        if r.emission_factor_id is None and r.energy_kwh + r.unallocated_kwh > 0
    )
    facts.add("hours_without_factor", hours_without_factor, "count")
    facts.tables["factors"] = [
        {
            "id": f.id,
            "factor_set": f.factor_set,
            "region": f.region,
            "kg_co2e_per_kwh": f.kg_co2e_per_kwh,
            "source": f.source,
            "method": f.method,
        }
        for f in used
    ]
    return facts


def device_facts(
    devices: Sequence[ScopeDevice], counted_ids: frozenset[int], hours: PeriodHours
) -> Facts:
    """Every device's energy and share of the total, largest first (sub-meters listed too)."""
    total = hours.total_kwh
    by_device_kwh: dict[int, float] = defaultdict(float)
    by_device_co2: dict[int, float] = defaultdict(float)
    for r in hours.rows:
        by_device_kwh[r.device_id] += r.energy_kwh + r.unallocated_kwh
        by_device_co2[r.device_id] += r.co2_kg
    ranked = sorted(devices, key=lambda d: (-by_device_kwh.get(d.id, 0.0), d.code))
    facts = Facts()
    table = facts.tables["by_device"] = [
        {
            "rank": i + 1,
            "code": d.code,
            "label": d.label,
            "location": d.location,
            "meter_role": d.meter_role,
            "counted": d.id in counted_ids,
            "kwh": by_device_kwh.get(d.id, 0.0),
            "co2_kg": by_device_co2.get(d.id, 0.0),
            "share_pct": _pct(by_device_kwh.get(d.id, 0.0), total),
        }
        for i, d in enumerate(ranked)
    ]
    facts.add("device_count", len(devices), "count")
    facts.add("counted_device_count", sum(1 for d in devices if d.id in counted_ids), "count")
    for i in range(TOP_DEVICES):
        row = table[i] if i < len(table) else None
        facts.add(f"device_top{i + 1}_name", row["label"] if row else None, "text")
        facts.add(f"device_top{i + 1}_kwh", row["kwh"] if row else None, "kwh")
        facts.add(f"device_top{i + 1}_share_pct", row["share_pct"] if row else None, "pct")
    return facts


def day_facts(hours: PeriodHours) -> Facts:
    """Each local day's energy, the highest and lowest day, weekdays against weekend days."""
    day_kwh, temps_by_day = hours.day_kwh, hours.temps_by_day
    days = sorted(day_kwh)
    facts = Facts()
    facts.tables["by_day"] = [
        {
            "date": d.isoformat(),
            "weekday": d.weekday(),
            "kwh": day_kwh[d],
            "co2_kg": hours.day_co2[d],
            "temperature_avg_c": _mean(temps_by_day[d]) if temps_by_day.get(d) else None,
        }
        for d in days
    ]
    max_day = max(days, key=lambda d: (day_kwh[d], -d.toordinal()))
    min_day = min(days, key=lambda d: (day_kwh[d], d.toordinal()))
    facts.add("avg_daily_kwh", _mean([day_kwh[d] for d in days]), "kwh")
    facts.add("max_day_date", max_day.isoformat(), "date")
    facts.add("max_day_kwh", day_kwh[max_day], "kwh")
    facts.add("min_day_date", min_day.isoformat(), "date")
    facts.add("min_day_kwh", day_kwh[min_day], "kwh")
    weekday = [day_kwh[d] for d in days if d.weekday() < 5]
    weekend = [day_kwh[d] for d in days if d.weekday() >= 5]
    facts.add("weekday_avg_daily_kwh", _mean(weekday) if weekday else None, "kwh")
    facts.add("weekend_avg_daily_kwh", _mean(weekend) if weekend else None, "kwh")
    facts.add(
        "weekend_vs_weekday_pct",
        _pct(_mean(weekend), _mean(weekday)) if weekend and weekday and _mean(weekday) else None,
        "pct",
    )
    return facts


def _night_kwh(hours: PeriodHours) -> list[float]:
    """The counted allocated kWh of each night hour (local NIGHT_HOURS) with data."""
    zone = hours.zone
    return [kwh for h, kwh in hours.hour_kwh.items() if h.astimezone(zone).hour in NIGHT_HOURS]


def profile_facts(hours: PeriodHours) -> Facts:
    """The hour-of-day profile, night base load, lowest and peak hour (mean W = kWh x 1000)."""
    zone, hour_kwh = hours.zone, hours.hour_kwh
    # Mean allocated kWh at each local hour, over the hours with data.
    by_hour_of_day: dict[int, list[float]] = defaultdict(list)
    for hour, kwh in hour_kwh.items():
        by_hour_of_day[hour.astimezone(zone).hour].append(kwh)
    facts = Facts()
    facts.tables["hourly_profile"] = [
        {
            "hour": h,
            "avg_kwh": _mean(by_hour_of_day[h]) if by_hour_of_day.get(h) else None,
            "avg_w": _mean(by_hour_of_day[h]) * 1000 if by_hour_of_day.get(h) else None,
        }
        for h in range(24)
    ]
    night = _night_kwh(hours)
    peak_hour = max(hour_kwh, key=lambda h: (hour_kwh[h], -h.timestamp()))
    facts.add("night_base_load_w", _mean(night) * 1000 if night else None, "w")
    facts.add("min_hour_w", min(hour_kwh.values()) * 1000, "w")
    facts.add("peak_hour_w", hour_kwh[peak_hour] * 1000, "w")
    facts.add("peak_hour_start", peak_hour.astimezone(zone).strftime("%Y-%m-%d %H:%M"), "hour")
    device_max = [r.power_max_w for r in hours.counted if r.power_max_w is not None]
    facts.add("peak_device_max_w", max(device_max) if device_max else None, "w")
    facts.add("avg_power_w", hours.allocated_kwh / len(hour_kwh) * 1000, "w")
    return facts


def comparison_facts(hours: PeriodHours) -> Facts:
    """Change against the previous period of equal length (None without its data)."""
    prev = hours.previous
    prev_total = math.fsum(r.energy_kwh + r.unallocated_kwh for r in prev)
    total = hours.total_kwh
    facts = Facts()
    facts.add("previous_total_kwh", prev_total if prev else None, "kwh")
    facts.add("previous_co2_location_kg", math.fsum(r.co2_kg for r in prev) if prev else None, "kg")
    facts.add("change_kwh", total - prev_total if prev else None, "kwh")
    facts.add(
        "change_pct",
        (total - prev_total) / prev_total * 100 if prev and prev_total else None,
        "pct_change",
    )
    return facts


def expected_device_hours(inputs: FactInputs) -> int:
    """The device-hours the counted devices should have: what coverage is measured against."""
    if inputs.counted_device_hours is not None:
        return inputs.counted_device_hours
    counted = sum(1 for d in inputs.devices if d.id in inputs.counted_ids)
    return (inputs.end_utc - inputs.start_utc) // _HOUR * counted


def coverage_facts(hours: PeriodHours, device_hours: int) -> Facts:
    """How much of the counted device-hours have data, and how many have gaps."""
    counted = hours.counted
    rows_by_slot = {(r.device_id, r.hour_start): r for r in counted}
    facts = Facts()
    facts.add("coverage_pct", math.fsum(r.coverage for r in counted) / device_hours * 100, "pct")
    facts.add("hours_with_data", len(hours.hour_kwh), "count")
    missing = device_hours - len(rows_by_slot)
    facts.add("missing_device_hours", missing, "count")
    low = sum(1 for r in rows_by_slot.values() if r.coverage < 0.5)
    facts.add("gap_device_hours", missing + low, "count")
    return facts


def intensity_facts(total_kwh: float, floor_area_m2: float | None) -> Facts:
    """Energy per floor area (GRI 302-3), when the floor area is known."""
    facts = Facts()
    facts.add("floor_area_m2", floor_area_m2, "m2")
    facts.add(
        "intensity_kwh_per_m2",
        total_kwh / floor_area_m2 if floor_area_m2 else None,
        "kwh_per_m2",
    )
    return facts


def environment_facts(hours: PeriodHours) -> Facts:
    """Hourly power against the hourly means of the scope's sensors; daily kWh on temperature."""
    hour_kwh = hours.hour_kwh
    temps: dict[datetime, list[float]] = defaultdict(list)
    humidity: dict[datetime, list[float]] = defaultdict(list)
    lux: dict[datetime, list[float]] = defaultdict(list)
    for r in hours.rows:
        if r.temperature_c is not None:
            temps[r.hour_start].append(r.temperature_c)
        if r.humidity_pct is not None:
            humidity[r.hour_start].append(r.humidity_pct)
        if r.brightness_lux is not None:
            lux[r.hour_start].append(r.brightness_lux)
    facts = Facts()
    for name, series in (("temperature", temps), ("humidity", humidity), ("brightness", lux)):
        pairs = [(_mean(series[h]), hour_kwh[h] * 1000) for h in sorted(hour_kwh) if series.get(h)]
        facts.add(f"corr_{name}_r", _pearson(pairs), "r")
        facts.add(f"corr_{name}_n", len(pairs), "count")
    temp_points = [(_mean(temps[h]), hour_kwh[h] * 1000) for h in sorted(hour_kwh) if temps.get(h)]
    step = max(1, math.ceil(len(temp_points) / MAX_SCATTER_POINTS))
    facts.tables["temperature_power"] = [
        {"temperature_c": t, "power_w": w} for t, w in temp_points[::step]
    ]
    temps_by_day = hours.temps_by_day
    daily_pairs = [
        (_mean(temps_by_day[d]), hours.day_kwh[d])
        for d in sorted(hours.day_kwh)
        if temps_by_day.get(d)
    ]
    facts.add("daily_kwh_per_c_slope", _slope(daily_pairs), "kwh_per_c")
    facts.add("daily_temperature_n", len(daily_pairs), "count")
    return facts


def savings_facts(hours: PeriodHours) -> Facts:
    """Savings potentials by rule, in kWh, kg CO2e and percent of the period's consumption."""
    night = _night_kwh(hours)
    night_kwh: float | None = None
    if night:
        night_w = _mean(night) * 1000
        min_w = min(hours.hour_kwh.values()) * 1000
        night_kwh = max(0.0, night_w - min_w) * len(night) / 1000
    factor = hours.effective_factor or 0.0
    facts = Facts()
    for prefix, kwh in (
        ("savings_night_base", night_kwh),
        ("savings_bright_lighting", _bright_excess_kwh(hours.counted)),
    ):
        facts.add(f"{prefix}_kwh", kwh, "kwh")
        facts.add(f"{prefix}_kg", None if kwh is None else kwh * factor, "kg")
        facts.add(f"{prefix}_pct", None if kwh is None else _pct(kwh, hours.total_kwh), "pct")
    return facts


def _bright_excess_kwh(rows: Iterable[HourRow]) -> float | None:
    """Energy above each light-sensing device's own minimum hour, in hours it saw daylight."""
    by_device: dict[int, list[HourRow]] = defaultdict(list)
    for r in rows:
        by_device[r.device_id].append(r)
    sensing = {
        d: rs for d, rs in by_device.items() if any(r.brightness_lux is not None for r in rs)
    }
    if not sensing:
        return None
    excess = 0.0
    for rs in sensing.values():
        floor = min(r.energy_kwh for r in rs)
        excess += math.fsum(
            max(0.0, r.energy_kwh - floor)
            for r in rs
            if r.brightness_lux is not None and r.brightness_lux >= BRIGHT_LUX
        )
    return excess


# Currencies, sites with savings and alerts a report names one by one (the rest: tables).
MAX_CURRENCIES = 3
MAX_BASELINE_SITES = 5
TOP_ALERTS = 3
MAX_TABLE_ROWS = 50
MAX_NAMED_SITES = 10


def cost_facts(costs: Sequence[SiteCost]) -> Facts:
    """The period's cost per currency (never added across currencies) and who has no tariff.

    Per currency: the energy-related cost of the costed kWh (any range of hours), and the sum
    of the bills of the whole local months in the period (with their demand and fixed
    charges). A site without a tariff adds no number: it is counted and named.
    """
    by_currency: dict[str, list[SiteCost]] = defaultdict(list)
    for c in costs:
        if c.currency is not None:
            by_currency[c.currency].append(c)
    currencies = sorted(by_currency)
    untariffed = sorted((c for c in costs if c.currency is None), key=lambda c: c.site_name)
    facts = Facts()
    facts.add("cost_currency_count", len(currencies) if costs else None, "count")
    facts.add(
        "cost_uncosted_kwh", math.fsum(c.uncosted_kwh for c in costs) if costs else None, "kwh"
    )
    facts.add("cost_untariffed_site_count", len(untariffed) if costs else None, "count")
    facts.add(
        "cost_untariffed_sites",
        ", ".join(c.site_name for c in untariffed[:MAX_NAMED_SITES]) or None,
        "text",
    )
    # The untariffed sites' own kWh: cost_uncosted_kwh also holds tariffed sites' hours
    # without a version, which the sentence naming the untariffed sites must not claim.
    facts.add(
        "cost_untariffed_kwh",
        math.fsum(c.uncosted_kwh for c in untariffed) if costs else None,
        "kwh",
    )
    for i in range(MAX_CURRENCIES):
        group = by_currency[currencies[i]] if i < len(currencies) else []
        bills = [b for c in group for b in c.bills]

        def total(values: Iterable[float], group: list[SiteCost] = group) -> float | None:
            return math.fsum(values) if group else None

        n = i + 1
        facts.add(f"cost{n}_currency", currencies[i] if group else None, "text")
        facts.add(f"cost{n}_site_count", len(group) if group else None, "count")
        facts.add(f"cost{n}_kwh", total(c.kwh for c in group), "kwh")
        facts.add(f"cost{n}_energy_charge", total(c.energy_charge for c in group), "money")
        facts.add(f"cost{n}_addons", total(c.addons for c in group), "money")
        facts.add(f"cost{n}_fund", total(c.fund for c in group), "money")
        facts.add(f"cost{n}_vat", total(c.vat for c in group), "money")
        facts.add(
            f"cost{n}_energy_related_total", total(c.energy_related_total for c in group), "money"
        )
        facts.add(f"cost{n}_bill_months", len(bills) if group else None, "count")
        facts.add(
            f"cost{n}_bill_demand_charge",
            math.fsum(b.demand_charge for b in bills) if bills else None,
            "money",
        )
        facts.add(
            f"cost{n}_bill_total", math.fsum(b.total for b in bills) if bills else None, "money"
        )
    facts.tables["cost_by_site"] = [
        {
            "site": c.site_name,
            "currency": c.currency,
            "kwh": c.kwh,
            "energy_related_total": c.energy_related_total if c.currency else None,
            "uncosted_kwh": c.uncosted_kwh,
            "reason": c.reason,
        }
        for c in sorted(costs, key=lambda c: (c.site_name, c.site_id))[:MAX_TABLE_ROWS]
    ]
    facts.tables["cost_bills"] = [
        {
            "site": c.site_name,
            "currency": c.currency,
            "month": b.month,
            "tariff": b.tariff,
            "billed_demand_kw": b.billed_demand_kw,
            "demand_charge": b.demand_charge,
            "energy_charge": b.energy_charge,
            "addons": b.addons,
            "fixed_charge": b.fixed_charge,
            "fund": b.fund,
            "vat": b.vat,
            "total": b.total,
        }
        for c in sorted(costs, key=lambda c: (c.site_name, c.site_id))
        for b in c.bills
    ][:MAX_TABLE_ROWS]
    return facts


def baseline_facts(sites: Sequence[SiteBaselineSavings]) -> Facts:
    """Savings against each site's baseline with their uncertainty, and the sites without."""
    with_savings = sorted((s for s in sites if s.reason is None), key=lambda s: s.site_id)
    missing = sorted((s for s in sites if s.reason is not None), key=lambda s: s.site_name)
    facts = Facts()
    facts.add("baseline_site_count", len(with_savings) if sites else None, "count")
    facts.add("baseline_missing_site_count", len(missing) if sites else None, "count")
    facts.add(
        "baseline_missing_sites",
        ", ".join(s.site_name for s in missing[:MAX_NAMED_SITES]) or None,
        "text",
    )
    for i in range(MAX_BASELINE_SITES):
        s = with_savings[i] if i < len(with_savings) else None
        n = f"baseline{i + 1}"
        first = s.baseline_first.isoformat() if s and s.baseline_first else None
        last = s.baseline_last.isoformat() if s and s.baseline_last else None
        facts.add(f"{n}_site", s.site_name if s else None, "text")
        facts.add(f"{n}_id", s.baseline_id if s else None, "count")
        facts.add(f"{n}_model", s.model if s else None, "text")
        facts.add(f"{n}_period_start", first, "date")
        facts.add(f"{n}_period_end", last, "date")
        facts.add(f"{n}_cv_rmse_pct", s.cv_rmse_pct if s else None, "pct")
        facts.add(f"{n}_nmbe_pct", s.nmbe_pct if s else None, "pct_change")
        facts.add(f"{n}_days", s.days if s else None, "count")
        facts.add(f"{n}_savings_kwh", s.savings_kwh if s else None, "kwh")
        facts.add(f"{n}_savings_pct", s.savings_pct if s else None, "pct_change")
        facts.add(f"{n}_uncertainty_kwh", s.uncertainty_kwh if s else None, "kwh")
        facts.add(f"{n}_uncertainty_pct", s.uncertainty_pct if s else None, "pct")
        facts.add(
            f"{n}_confidence_pct",
            s.confidence * 100 if s and s.confidence is not None else None,
            "pct",
        )
    facts.tables["baseline_savings"] = [
        {
            "site": s.site_name,
            "baseline_id": s.baseline_id,
            "model": s.model,
            "cv_rmse_pct": s.cv_rmse_pct,
            "nmbe_pct": s.nmbe_pct,
            "savings_kwh": s.savings_kwh,
            "savings_pct": s.savings_pct,
            "uncertainty_kwh": s.uncertainty_kwh,
            "uncertainty_pct": s.uncertainty_pct,
            "reason": s.reason,
        }
        for s in [*with_savings, *missing][:MAX_TABLE_ROWS]
    ]
    return facts


def alert_facts(
    alerts: Sequence[AlertRow],
    zone: ZoneInfo,
    end_utc: datetime | None = None,
    truncated: bool = False,
) -> Facts:
    """The alerts active in the period: how many of each kind, open or cleared at its end, and
    the first few (open ones first, then the latest raised)."""

    def is_open(a: AlertRow) -> bool:
        return a.cleared_at is None or (end_utc is not None and a.cleared_at >= end_utc)

    ranked = sorted(alerts, key=lambda a: (not is_open(a), -a.raised_at.timestamp(), a.id))
    open_count = sum(1 for a in alerts if is_open(a))
    facts = Facts()
    if truncated:
        facts.notes["alerts"] = f"only the first {len(alerts)} alerts of the period were read"
    facts.add("alerts_count", len(alerts), "count")
    facts.add("alerts_open_count", open_count, "count")
    facts.add("alerts_cleared_count", len(alerts) - open_count, "count")
    for kind in ALERT_KINDS:
        facts.add(f"alerts_{kind}_count", sum(1 for a in alerts if a.kind == kind), "count")

    def local(at: datetime) -> str:
        return at.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    for i in range(TOP_ALERTS):
        a = ranked[i] if i < len(ranked) else None
        n = f"alert{i + 1}"
        facts.add(f"{n}_kind", a.kind if a else None, "text")
        facts.add(f"{n}_subject", a.subject if a else None, "text")
        facts.add(f"{n}_raised_at", local(a.raised_at) if a else None, "hour")
        facts.add(f"{n}_status", ("open" if is_open(a) else "cleared") if a else None, "text")
    facts.tables["alerts"] = [
        {
            "kind": a.kind,
            "rule": a.rule_name,
            "subject": a.subject,
            "raised_at": local(a.raised_at),
            "cleared_at": None if is_open(a) or a.cleared_at is None else local(a.cleared_at),
        }
        for a in ranked[:MAX_TABLE_ROWS]
    ]
    return facts


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else math.nan


def _pct(part: float, whole: float) -> float | None:
    return part / whole * 100 if whole else None


def _pearson(pairs: Sequence[tuple[float, float]]) -> float | None:
    """Pearson's r of the pairs; None with fewer than 3 or no variance."""
    if len(pairs) < 3:
        return None
    mx = _mean([p[0] for p in pairs])
    my = _mean([p[1] for p in pairs])
    sxy = math.fsum((x - mx) * (y - my) for x, y in pairs)
    sxx = math.fsum((x - mx) ** 2 for x, _ in pairs)
    syy = math.fsum((y - my) ** 2 for _, y in pairs)
    if sxx <= 0 or syy <= 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def _slope(pairs: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of y on x; None with fewer than 3 or no spread in x."""
    if len(pairs) < 3:
        return None
    mx = _mean([p[0] for p in pairs])
    my = _mean([p[1] for p in pairs])
    sxx = math.fsum((x - mx) ** 2 for x, _ in pairs)
    if sxx <= 0:
        return None
    return math.fsum((x - mx) * (y - my) for x, y in pairs) / sxx


# --- loading (SQL) -----------------------------------------------------------------------------

_stats = HOURLY_STATS
_factors = EMISSION_FACTORS
_RAW_DATETIME = DateTime()


@dataclass(frozen=True, slots=True)
class ReportScope:
    """What a report covers: the organisation, one site, or a list of devices."""

    kind: Literal["organisation", "site", "devices"]
    site_id: int | None = None
    device_ids: tuple[int, ...] = ()


def load_inputs(
    conn: Connection,
    scope: ReportScope,
    start_utc: datetime,
    end_utc: datetime,
    *,
    default_tz: str,
    settings: Settings,
) -> FactInputs:
    """Read the scope's devices, hourly rows (this and the previous period) and factors, and
    the scope's cost, savings against its baselines and alerts of the period.

    Which device counts in which hour, on which site, and each site's contracts come from
    powerflow_common.totals (through queries.load_scope), as for the API statistics.
    """
    try:
        totals = load_scope(
            conn,
            scope.kind,
            default_tz=default_tz,
            site_id=scope.site_id,
            device_ids=scope.device_ids,
        )
    except ScopeNotFound as exc:
        raise NoData(str(exc)) from exc
    if not totals.devices:
        raise NoData("the scope has no devices")
    period_spans = [s for s in totals.spans if s.start < end_utc and start_utc < s.end]
    current = _hour_rows(conn, totals, start_utc, end_utc)
    previous = _previous_totals(conn, totals, start_utc - (end_utc - start_utc), start_utc)
    factor_ids = {r.emission_factor_id for r in current if r.emission_factor_id is not None}
    factors = [
        FactorInfo(
            id=f.id,
            factor_set=f.factor_set,
            region=f.region,
            kg_co2e_per_kwh=f.kg_co2e_per_kwh,
            source=f.source,
            method=f.method,
        )
        for f in conn.execute(select(_factors).where(_factors.c.id.in_(factor_ids or {-1})))
    ]
    sites = _scope_sites(conn, totals)
    site_ids = [i for i, _ in sites] or [-1]
    zones = {
        int(r.id): str(r.timezone)
        for r in conn.execute(select(SITES.c.id, SITES.c.timezone).where(SITES.c.id.in_(site_ids)))
    }
    alerts, truncated = _scope_alerts(conn, totals, start_utc, end_utc)
    if truncated:
        log.warning("report_alerts_truncated", limit=MAX_ALERTS_LOADED)
    return FactInputs(
        scope=scope.kind,
        scope_label=totals.label,
        tz=totals.timezone,
        start_utc=start_utc,
        end_utc=end_utc,
        devices=totals.devices,
        counted_ids=frozenset(s.device_id for s in period_spans if s.counted),
        rows=current,
        previous_rows=previous,
        factors=factors,
        floor_area_m2=totals.floor_area_m2,
        contracted_kwh_by_site=contracted_by_site(totals.contracts, start_utc, end_utc),
        costs=[_site_cost(conn, i, name, start_utc, end_utc, default_tz) for i, name in sites],
        baselines=[
            _site_baseline_savings(conn, settings, i, name, zones[i], start_utc, end_utc)
            for i, name in sites
        ],
        alerts=alerts,
        alerts_truncated=truncated,
        counted_device_hours=sum(
            _hours_starting_in(max(s.start, start_utc), min(s.end, end_utc), start_utc)
            for s in period_spans
            if s.counted
        ),
    )


def _hour_rows(
    conn: Connection, totals: TotalsScope, start_utc: datetime, end_utc: datetime
) -> list[HourRow]:
    """The scope's hours, each with the site it belonged to and whether it counted."""
    in_scope, params = span_condition(totals.spans, counted_only=False, prefix="in")
    by_device = totals.spans_by_device()
    s = _stats.c
    # Plain SQL columns: the UTC type decorator costs more than the query for a month of rows.
    # type_coerce, not CAST: SQLite would CAST its ISO text to a number (the year).
    result = conn.execute(
        select(
            s.device_id,
            type_coerce(s.hour_start, _RAW_DATETIME),
            s.energy_kwh,
            s.unallocated_kwh,
            s.coverage,
            s.co2_kg,
            s.emission_factor_id,
            s.power_max_w,
            s.temperature_avg_c,
            s.humidity_avg_pct,
            s.brightness_avg_lux,
        )
        .where(bind_text(in_scope, params), s.hour_start >= start_utc, s.hour_start < end_utc)
        # The primary key's order: free to read, and the same facts from every engine (an
        # unordered scan comes back in whatever order the engine keeps its rows).
        .order_by(s.device_id, s.hour_start)
    )
    out = []
    for r in result:
        hour = r[1].replace(tzinfo=UTC)
        span = _span_of(by_device.get(r[0], []), hour)
        if span is None:  # a bound rounded in SQL; cannot happen with whole-hour spans
            continue
        out.append(
            HourRow(
                device_id=r[0],
                hour_start=hour,
                energy_kwh=r[2],
                unallocated_kwh=r[3],
                coverage=r[4],
                co2_kg=r[5],
                emission_factor_id=r[6],
                power_max_w=r[7],
                temperature_c=r[8],
                humidity_pct=r[9],
                brightness_lux=r[10],
                site_id=span.site_id,
                counted=span.counted,
            )
        )
    return out


def _hours_starting_in(lo: datetime, hi: datetime, grid: datetime) -> int:
    """How many hours of the grid through ``grid`` start in [lo, hi): an hour is its start's."""
    first = grid + math.ceil((lo - grid) / _HOUR) * _HOUR
    return max(0, math.ceil((hi - first) / _HOUR))


def _span_of(device_spans: Sequence[Span], hour: datetime) -> Span | None:
    for span in device_spans:
        if span.covers(hour):
            return span
    return None


def _previous_totals(
    conn: Connection, totals: TotalsScope, start_utc: datetime, end_utc: datetime
) -> list[HourRow]:
    """The previous period's counted hours summed per device in SQL (one row each)."""
    counted, params = span_condition(totals.spans, counted_only=True, prefix="ct")
    s = _stats.c
    result = conn.execute(
        select(
            s.device_id,
            func.sum(s.energy_kwh),
            func.sum(s.unallocated_kwh),
            func.sum(s.co2_kg),
        )
        .where(bind_text(counted, params), s.hour_start >= start_utc, s.hour_start < end_utc)
        .group_by(s.device_id)
        .order_by(s.device_id)
    )
    return [
        HourRow(
            device_id=r[0],
            hour_start=start_utc,
            energy_kwh=float(r[1] or 0.0),
            unallocated_kwh=float(r[2] or 0.0),
            coverage=0.0,
            co2_kg=float(r[3] or 0.0),
            emission_factor_id=None,
            counted=True,
        )
        for r in result
    ]


# --- loading the cost, the savings against baselines and the alerts (SQL) --------------------

# Alerts a report reads at most (a period with more says so in its notes).
MAX_ALERTS_LOADED = 10_000


def _scope_sites(conn: Connection, totals: TotalsScope) -> list[tuple[int, str]]:
    """The sites a cost or a baseline is computed for: the site, or every site of the
    organisation; none for a list of devices (a tariff and a baseline are a site's)."""
    if totals.kind == "site" and totals.site_id is not None:
        return [(totals.site_id, totals.label)]
    if totals.kind != "organisation":
        return []
    return [
        (int(r.id), str(r.name))
        for r in conn.execute(select(SITES.c.id, SITES.c.name).order_by(SITES.c.id))
    ]


def _site_cost(
    conn: Connection,
    site_id: int,
    name: str,
    start_utc: datetime,
    end_utc: datetime,
    default_tz: str,
) -> SiteCost:
    """A site's cost of the period through powerflow_common.costs (the totals' counted kWh)."""
    scope = load_scope(conn, "site", default_tz=default_tz, site_id=site_id)
    history = costs.site_tariff_history(conn, site_id)
    if not history:
        kwh = math.fsum(i.kwh for i in costs.hourly_intervals(conn, scope, start_utc, end_utc))
        return SiteCost(site_id, name, None, uncosted_kwh=kwh, reason="no tariff assigned")
    try:
        currency, buckets, uncosted = costs.site_cost(conn, scope, "month", start_utc, end_utc)
    except (costs.CostError, costs.NoTariff) as exc:  # mixed currencies, a tariff gone
        # No hour is costed: all the period's kWh are uncosted, or they vanish from the report.
        kwh = math.fsum(i.kwh for i in costs.hourly_intervals(conn, scope, start_utc, end_utc))
        return SiteCost(site_id, name, None, uncosted_kwh=kwh, reason=str(exc))
    parts = [b.cost for b in buckets if b.cost is not None]
    zone = ZoneInfo(scope.timezone)
    bills: list[CostBill] = []
    for b in buckets:
        lo, hi = period_bounds_utc("month", b.start, scope.timezone)
        if lo < start_utc or hi > end_utc:
            continue  # a month only partly in the period has no bill here
        first = (lo + timedelta(hours=12)).astimezone(zone).date()
        try:
            bill = costs.site_bill(conn, scope, first.year, first.month)
        except costs.NoTariff:
            continue  # a month before the site's first tariff: its kWh are uncosted
        if currency is None:
            currency = bill.currency  # a month without counted kWh still has its bill
        bills.append(
            CostBill(
                month=f"{bill.year:04d}-{bill.month:02d}",
                tariff=bill.tariff.name,
                billed_demand_kw=None if bill.demand is None else bill.demand.kw,
                demand_charge=bill.demand_charge,
                energy_charge=bill.energy_charge,
                addons=math.fsum(bill.addons.values()),
                fixed_charge=bill.fixed_charge,
                fund=bill.fund,
                vat=bill.vat,
                total=bill.total,
            )
        )
    if currency is None:
        last_month = (end_utc - timedelta(seconds=1)).astimezone(zone).date().replace(day=1)
        in_force = [h for h in history if h.valid_from <= last_month]
        reason = (
            f"tariff {in_force[-1].tariff_name!r} has no version valid in the period"
            if in_force
            else f"its tariff starts on {history[0].valid_from.isoformat()}, after the period"
        )
        return SiteCost(site_id, name, None, uncosted_kwh=uncosted, reason=reason)
    total = costs.merge(parts) if parts else CostBreakdown(currency=currency)
    return SiteCost(
        site_id,
        name,
        currency,
        kwh=total.kwh,
        energy_charge=total.energy,
        addons=math.fsum(total.addons.values()),
        fund=total.fund,
        vat=total.vat,
        energy_related_total=total.total,
        uncosted_kwh=uncosted,
        bills=tuple(bills),
    )


def _site_baseline_savings(
    conn: Connection, settings: Settings, site_id: int, name: str, tz: str,
    start_utc: datetime, end_utc: datetime,
) -> SiteBaselineSavings:  # fmt: skip
    """A site's savings over the period's local days against its latest baseline."""
    zone = ZoneInfo(tz)
    days = DayRange.from_exclusive(
        start_utc.astimezone(zone).date(), end_utc.astimezone(zone).date()
    )
    try:
        found = site_savings(conn, settings, site_id, days)
    except ScopeNotFound as exc:
        return SiteBaselineSavings(site_id, name, reason=str(exc))
    except BaselineRefused as exc:
        return SiteBaselineSavings(site_id, name, reason=exc.detail)
    stored, result = found.baseline, found.savings
    return SiteBaselineSavings(
        site_id,
        name,
        baseline_id=stored.id,
        model=stored.model.kind,
        baseline_first=stored.period.first,
        baseline_last=stored.period.last,
        cv_rmse_pct=stored.model.stats.cv_rmse_pct,
        nmbe_pct=stored.model.stats.nmbe_pct,
        days=result.m_reporting,
        savings_kwh=result.savings_kwh,
        savings_pct=result.savings_pct,
        uncertainty_kwh=result.uncertainty_kwh,
        uncertainty_pct=result.uncertainty_pct,
        confidence=result.confidence,
    )


def _scope_alerts(
    conn: Connection, totals: TotalsScope, start_utc: datetime, end_utc: datetime
) -> tuple[list[AlertRow], bool]:
    """Alerts active in [start, end) about the scope's devices (while on it) or its sites;
    and whether there were more than MAX_ALERTS_LOADED."""
    a, r = ALERTS.c, ALERT_RULES.c
    rows = conn.execute(
        select(a.id, a.kind, a.subject, a.raised_at, a.cleared_at, r.name)
        .join(ALERT_RULES, ALERT_RULES.c.id == a.rule_id)
        .where(a.raised_at < end_utc, (a.cleared_at.is_(None)) | (a.cleared_at >= start_utc))
        .order_by(a.raised_at, a.id)
        .limit(MAX_ALERTS_LOADED + 1)
    ).all()
    by_device = totals.spans_by_device()
    labels = {d.id: d.label for d in totals.devices}
    site_names = dict(_scope_sites(conn, totals)) if totals.kind in ("site", "organisation") else {}
    out = []
    for row in rows[:MAX_ALERTS_LOADED]:
        raised = _utc(row.raised_at)
        kind, _, raw_id = str(row.subject).partition(":")
        if not raw_id.isdigit():
            continue
        subject_id = int(raw_id)
        if kind == "device":
            # A device's alert belongs to the scope it sat in when raised.
            spans_of = by_device.get(subject_id, [])
            if not spans_of or (totals.kind == "site" and _span_of(spans_of, raised) is None):
                continue
            label = labels.get(subject_id, f"device {subject_id}")
        elif kind == "site" and subject_id in site_names:
            label = site_names[subject_id]
        else:
            continue
        cleared = None if row.cleared_at is None else _utc(row.cleared_at)
        out.append(AlertRow(int(row.id), str(row.kind), str(row.name), label, raised, cleared))
    return out, len(rows) > MAX_ALERTS_LOADED


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
