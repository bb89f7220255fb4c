"""Electricity tariffs and the bill they make (pure).

A tariff is versioned like an emission factor: one name (``kepco-general-b-high-a-ii``), one
row per version valid for consumption days [valid_from, valid_to) in the site's timezone.
A version holds time-of-use energy rates by season and time band, fixed daily and monthly
charges, and a demand (basic) charge per kW of billed demand. Add-ons are versioned
components of their own (``Component``): per-kWh charges (KEPCO's climate-environment charge
and fuel-cost adjustment), a percentage of the bill (the power-industry fund) and VAT.

KEPCO's bill, as modelled here (sources and what could not be verified: docs/architecture.md,
"Tariffs and cost"):

- **Time bands.** Each season maps every local hour of a weekday to a band (경부하 off-peak,
  중간부하 mid-peak, 최대부하 on-peak). On Saturdays on-peak hours are billed as mid-peak;
  Sundays and the public holidays KEPCO names are off-peak all day (``DayRules``).
- **Billed demand (요금적용전력).** The highest 15-minute demand of the current month and of
  the Dec-Feb and Jul-Sep months among the last 12 months (the current one included),
  off-peak quarters excluded, and never below 30 % of the contract power.
- **Rounding (``rounding="kepco"``).** Every charge line (demand, energy, climate, fuel) is cut
  to whole won; the power-industry fund is cut to 10 won; VAT is rounded to the nearest won;
  the amount billed is cut to 10 won. ``rounding="none"`` keeps every figure exact.

Hour and day costs (``energy_cost``) are exact, unrounded sums of kWh x rate: splitting a
period never changes them. Only a month's bill (``month_bill``) rounds.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

import holidays as holidays_lib
import msgspec

from powerflow_common.errors import InvalidInput, NotFound
from powerflow_common.periods import validate_timezone

__all__ = [
    "COMPONENT_KINDS",
    "DAY_TYPES",
    "PEAK_SEASON_MONTHS",
    "Bill",
    "BilledDemand",
    "Component",
    "ComponentKind",
    "CostBreakdown",
    "DayRules",
    "DayType",
    "DemandPeak",
    "DemandRule",
    "Forecast",
    "Interval",
    "Plan",
    "Season",
    "Tariff",
    "TariffDefinition",
    "TariffError",
    "TariffNotFound",
    "billed_demand",
    "day_type",
    "energy_cost",
    "forecast_month",
    "month_bill",
    "month_of",
    "monthly_peaks",
    "select_tariff",
    "validate_definition",
]

ComponentKind = Literal["per_kwh", "percent_of_bill", "vat"]
COMPONENT_KINDS: tuple[ComponentKind, ...] = ("per_kwh", "percent_of_bill", "vat")
DayType = Literal["weekday", "saturday", "sunday", "holiday"]
DAY_TYPES: tuple[DayType, ...] = ("weekday", "saturday", "sunday", "holiday")
# KEPCO's ratchet months: winter (Dec-Feb) and summer (Jul-Sep) peaks.
PEAK_SEASON_MONTHS = (12, 1, 2, 7, 8, 9)
QUARTER = timedelta(minutes=15)
HOURS_PER_DAY = 24
MAX_SEASONS = 12
MAX_BANDS = 8
MAX_NAME = 64
# The largest rate, demand charge per kW or fixed charge a definition may hold (the same
# bound as a component's rate). Without one, a finite but huge rate overflows a bill's
# arithmetic to inf, which Decimal cannot round: a bill fails instead of a bad definition.
MAX_CHARGE = 1e6


class TariffError(InvalidInput, ValueError):
    """A tariff definition that cannot be used (machine reason, human detail)."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class TariffNotFound(NotFound, LookupError):
    """No version of the tariff is valid on the day asked for."""

    def __init__(self, name: str, on: date) -> None:
        self.name = name
        self.on = on
        super().__init__(f"no version of tariff {name!r} is valid on {on.isoformat()}")


class Season(msgspec.Struct, frozen=True, kw_only=True):
    """Months of a season, the band of each local weekday hour, and each band's rate per kWh."""

    name: str
    months: tuple[int, ...]
    hours: tuple[str, ...]  # 24 band names, hour 0 .. 23 of a weekday
    rates: dict[str, float]  # band -> currency per kWh


class DayRules(msgspec.Struct, frozen=True, kw_only=True):
    """How Saturdays, Sundays and public holidays change the weekday bands.

    ``saturday``: band -> band billed instead (KEPCO: on-peak billed as mid-peak).
    ``sunday_band`` / ``holiday_band``: every hour of the day is billed in this band.
    ``holiday_country``: the ``holidays`` library's country; holidays whose name contains
    any of ``holiday_exclude`` do not count (e.g. substitute days a utility does not name).
    """

    saturday: dict[str, str] = msgspec.field(default_factory=dict)
    sunday_band: str | None = None
    holiday_band: str | None = None
    holiday_country: str | None = None
    holiday_exclude: tuple[str, ...] = ()


class DemandRule(msgspec.Struct, frozen=True, kw_only=True):
    """The demand (basic) charge: currency per kW of billed demand per month.

    Billed demand is the month's highest 15-minute demand, raised to the highest of the
    ``ratchet_months`` among the last ``ratchet_lookback_months`` months (the current one
    included), and at least ``min_fraction_of_contract`` x contract power. Quarters in
    ``excluded_bands`` never set a peak. With no readings at all, billed demand is the
    floor (or the contract power when there is no floor).
    """

    charge_per_kw: float
    ratchet_months: tuple[int, ...] = ()
    ratchet_lookback_months: int = 12
    min_fraction_of_contract: float = 0.0
    excluded_bands: tuple[str, ...] = ()


class TariffDefinition(msgspec.Struct, frozen=True, kw_only=True):
    """What one version of a tariff charges."""

    currency: str
    seasons: tuple[Season, ...]
    days: DayRules = DayRules()
    fixed_per_day: float = 0.0
    fixed_per_month: float = 0.0
    demand: DemandRule | None = None
    component_set: str | None = None  # which add-ons apply (Component.component_set)
    rounding: Literal["kepco", "none"] = "none"


class Tariff(msgspec.Struct, frozen=True, kw_only=True):
    """One version of a named tariff; ``id`` 0 until the database assigns one."""

    id: int
    name: str
    label: str
    valid_from: date
    valid_to: date | None
    source: str
    definition: TariffDefinition


class Component(msgspec.Struct, frozen=True, kw_only=True):
    """An add-on of a component set, valid for consumption days [valid_from, valid_to).

    ``per_kwh``: currency per kWh (may be negative: a fuel-cost adjustment can be a rebate).
    ``percent_of_bill``: percent of the bill before VAT (KEPCO's power-industry fund).
    ``vat``: percent of the bill before VAT and fund.
    """

    id: int
    component_set: str
    name: str
    kind: ComponentKind
    rate: float
    valid_from: date
    valid_to: date | None
    source: str


def validate_definition(d: TariffDefinition) -> TariffDefinition:
    """``d`` if every month has one season and every band a rate; else TariffError."""
    if not d.seasons or len(d.seasons) > MAX_SEASONS:
        raise TariffError("bad_seasons", f"a tariff has 1 to {MAX_SEASONS} seasons")
    if not (len(d.currency) == 3 and d.currency.isalpha() and d.currency.isupper()):
        raise TariffError("bad_currency", f"currency {d.currency!r} is not an ISO 4217 code")
    months = sorted(m for s in d.seasons for m in s.months)
    if months != list(range(1, 13)):
        raise TariffError("bad_months", "the seasons must cover months 1..12, each exactly once")
    bands: set[str] = set()
    for s in d.seasons:
        bands |= _season_bands(s)
    _check_day_rules(d.days, bands)
    for value in (d.fixed_per_day, d.fixed_per_month):
        if not math.isfinite(value) or not 0 <= value <= MAX_CHARGE:
            raise TariffError("bad_fixed_charge", f"fixed charges are 0..{MAX_CHARGE:,.0f}")
    if d.demand is not None:
        _check_demand_rule(d.demand)
    return d


def _season_bands(s: Season) -> set[str]:
    """The bands a season names, once each has 24 hours and a finite rate; else TariffError."""
    if len(s.hours) != HOURS_PER_DAY:
        raise TariffError("bad_hours", f"season {s.name!r} needs 24 hourly bands")
    missing = set(s.hours) - set(s.rates)
    if missing:
        raise TariffError("band_without_rate", f"season {s.name!r}: no rate for {missing}")
    if len(s.rates) > MAX_BANDS or any(len(b) > MAX_NAME for b in s.rates):
        raise TariffError("bad_bands", f"season {s.name!r}: at most {MAX_BANDS} bands")
    if any(not math.isfinite(r) or not 0 <= r <= MAX_CHARGE for r in s.rates.values()):
        raise TariffError("bad_rate", f"season {s.name!r}: rates are 0..{MAX_CHARGE:,.0f}")
    return set(s.rates)


def _check_day_rules(rules: DayRules, bands: set[str]) -> None:
    """Day rules name only bands with a rate and a holiday calendar that exists."""
    for band in [*rules.saturday.values(), rules.sunday_band, rules.holiday_band]:
        if band is not None and band not in bands:
            raise TariffError("unknown_band", f"day rules name band {band!r}, which has no rate")
    if rules.holiday_country is not None:
        try:
            holidays_lib.country_holidays(rules.holiday_country)
        except NotImplementedError as exc:
            raise TariffError(
                "unknown_country", f"no holiday calendar for {rules.holiday_country!r}"
            ) from exc


def _check_demand_rule(dr: DemandRule) -> None:
    if not math.isfinite(dr.charge_per_kw) or not 0 <= dr.charge_per_kw <= MAX_CHARGE:
        raise TariffError("bad_demand_charge", f"the demand charge is 0..{MAX_CHARGE:,.0f} per kW")
    if not 0 <= dr.min_fraction_of_contract <= 1:
        raise TariffError("bad_floor", "min_fraction_of_contract is between 0 and 1")
    if not 1 <= dr.ratchet_lookback_months <= 24:
        raise TariffError("bad_lookback", "ratchet_lookback_months is 1..24")
    if any(m not in range(1, 13) for m in dr.ratchet_months):
        raise TariffError("bad_months", "ratchet months are 1..12")


def select_tariff(tariffs: Iterable[Tariff], name: str, on: date) -> Tariff:
    """The version of ``name`` valid on local day ``on`` (latest valid_from); TariffNotFound."""
    matching = [
        t
        for t in tariffs
        if t.name == name and t.valid_from <= on and (t.valid_to is None or on < t.valid_to)
    ]
    if not matching:
        raise TariffNotFound(name, on)
    return max(matching, key=lambda t: (t.valid_from, t.id))


@lru_cache(maxsize=64)
def _holiday_calendar(country: str, year: int, exclude: tuple[str, ...]) -> frozenset[date]:
    calendar = holidays_lib.country_holidays(country, years=year)
    return frozenset(day for day, name in calendar.items() if not any(x in name for x in exclude))


def day_type(rules: DayRules, day: date) -> DayType:
    """A local day as the tariff sees it: a named holiday first, then the weekday."""
    if rules.holiday_country is not None and day in _holiday_calendar(
        rules.holiday_country, day.year, rules.holiday_exclude
    ):
        return "holiday"
    weekday = day.weekday()
    return "saturday" if weekday == 5 else "sunday" if weekday == 6 else "weekday"


def _season(d: TariffDefinition, month: int) -> Season:
    for s in d.seasons:
        if month in s.months:
            return s
    raise TariffError("bad_months", f"no season holds month {month}")  # validated away


def band_at(d: TariffDefinition, local: datetime) -> tuple[Season, str]:
    """The season and band of a local instant (the band of its whole local hour)."""
    season = _season(d, local.month)
    band = season.hours[local.hour]
    kind = day_type(d.days, local.date())
    if kind == "holiday" and d.days.holiday_band is not None:
        return season, d.days.holiday_band
    if kind in ("sunday", "holiday") and d.days.sunday_band is not None:
        return season, d.days.sunday_band
    if kind == "saturday":
        band = d.days.saturday.get(band, band)
    return season, band


class Plan:
    """A site's tariff versions and add-ons, resolved per local day (pure, cached)."""

    def __init__(
        self, versions: Sequence[Tariff], components: Sequence[Component], timezone: str
    ) -> None:
        if not versions:
            raise TariffError("no_tariff", "a plan needs at least one tariff version")
        names = {v.name for v in versions}
        if len(names) != 1:
            raise TariffError("mixed_tariffs", f"one tariff per plan, got {sorted(names)}")
        currencies = {v.definition.currency for v in versions}
        if len(currencies) != 1:
            raise TariffError("mixed_currencies", f"versions differ in currency: {currencies}")
        self.name = versions[0].name
        self.currency = versions[0].definition.currency
        self.versions = tuple(versions)
        self.components = tuple(components)
        self.zone = ZoneInfo(validate_timezone(timezone))
        self._by_day: dict[date, Tariff] = {}
        self._components: dict[tuple[date, ComponentKind], list[Component]] = {}

    def version_on(self, day: date) -> Tariff:
        found = self._by_day.get(day)
        if found is None:
            found = self._by_day[day] = select_tariff(self.versions, self.name, day)
        return found

    def components_on(self, day: date, kind: ComponentKind) -> list[Component]:
        """The add-ons of the version's set valid on ``day``: the latest of each name."""
        key = (day, kind)
        cached = self._components.get(key)
        if cached is None:
            cached = self._components[key] = self._select_components(day, kind)
        return cached

    def _select_components(self, day: date, kind: ComponentKind) -> list[Component]:
        cset = self.version_on(day).definition.component_set
        if cset is None:
            return []
        latest: dict[str, Component] = {}
        for c in self.components:
            if (
                c.component_set == cset
                and c.kind == kind
                and c.valid_from <= day
                and (c.valid_to is None or day < c.valid_to)
            ):
                held = latest.get(c.name)
                if held is None or (c.valid_from, c.id) > (held.valid_from, held.id):
                    latest[c.name] = c
        return [latest[n] for n in sorted(latest)]

    def local(self, at: datetime) -> datetime:
        return at.astimezone(self.zone)

    def demand_definition(self, day: date) -> TariffDefinition:
        """The version of ``day`` for reading a past peak; before the first version, the first.

        The ratchet looks back 12 months, to demand measured before the tariff's first
        version here: its bands are read by the earliest version.
        """
        try:
            return self.version_on(day).definition
        except TariffNotFound:
            return min(self.versions, key=lambda t: t.valid_from).definition

    def covers(self, at: datetime) -> bool:
        """Whether a version is valid on the local day of ``at``."""
        try:
            self.version_on(self.local(at).date())
        except TariffNotFound:
            return False
        return True


class Interval(msgspec.Struct, frozen=True):
    """Energy used in one interval starting at ``start`` (UTC), wholly inside one local hour."""

    start: datetime
    kwh: float


@dataclass(slots=True)
class CostBreakdown:
    """Exact (unrounded) energy-related cost of some intervals, by band and add-on.

    ``subtotal`` = energy + per-kWh add-ons; ``fund`` and ``vat`` are the percentages of it;
    ``total`` = subtotal + fund + vat. Demand and fixed charges are monthly: on the bill.
    """

    currency: str
    kwh: float = 0.0
    kwh_by_band: dict[str, float] = field(default_factory=dict)
    energy_by_band: dict[str, float] = field(default_factory=dict)
    energy: float = 0.0
    addons: dict[str, float] = field(default_factory=dict)  # per-kWh add-on name -> amount
    subtotal: float = 0.0
    fund: float = 0.0
    vat: float = 0.0
    total: float = 0.0


def energy_cost(plan: Plan, intervals: Iterable[Interval]) -> CostBreakdown:
    """kWh x the rate of each interval's band, plus per-kWh add-ons, fund and VAT (exact).

    A negative kWh is refused (import energy only); each interval is charged by the tariff
    version and add-ons valid on its local day.
    """
    kwh_by_band: dict[str, list[float]] = defaultdict(list)
    money_by_band: dict[str, list[float]] = defaultdict(list)
    addons: dict[str, list[float]] = defaultdict(list)
    pct: dict[str, list[float]] = defaultdict(list)
    for item in intervals:
        if item.kwh < 0 or not math.isfinite(item.kwh):
            raise ValueError(f"kWh must be finite and >= 0, got {item.kwh}")
        local = plan.local(item.start)
        day = local.date()
        d = plan.version_on(day).definition
        season, band = band_at(d, local)
        kwh_by_band[band].append(item.kwh)
        line = item.kwh * season.rates[band]
        money_by_band[band].append(line)
        sub = line
        for c in plan.components_on(day, "per_kwh"):
            addons[c.name].append(item.kwh * c.rate)
            sub += item.kwh * c.rate
        kinds: tuple[ComponentKind, ...] = ("percent_of_bill", "vat")
        for kind in kinds:
            rate = sum(c.rate for c in plan.components_on(day, kind))
            pct[kind].append(sub * rate / 100.0)
    out = CostBreakdown(currency=plan.currency)
    out.kwh_by_band = {b: math.fsum(v) for b, v in sorted(kwh_by_band.items())}
    out.energy_by_band = {b: math.fsum(v) for b, v in sorted(money_by_band.items())}
    out.kwh = math.fsum(out.kwh_by_band.values())
    out.energy = math.fsum(out.energy_by_band.values())
    out.addons = {n: math.fsum(v) for n, v in sorted(addons.items())}
    out.subtotal = out.energy + math.fsum(out.addons.values())
    out.fund = math.fsum(pct["percent_of_bill"])
    out.vat = math.fsum(pct["vat"])
    out.total = out.subtotal + out.fund + out.vat
    return out


# --- demand ------------------------------------------------------------------------------------


class DemandPeak(msgspec.Struct, frozen=True):
    """A month's highest 15-minute demand and the quarter (UTC start) that set it."""

    year: int
    month: int
    kw: float
    quarter_start: datetime


def month_of(local_day: date) -> tuple[int, int]:
    return local_day.year, local_day.month


def monthly_peaks(plan: Plan, quarters: Iterable[Interval]) -> dict[tuple[int, int], DemandPeak]:
    """Each local month's highest 15-minute demand (kW = kWh x 4), excluded bands left out.

    A tie keeps the earliest quarter: the evidence is the first time the peak was reached.
    Quarters before the tariff's first version are read by that first version's bands.
    """
    peaks: dict[tuple[int, int], DemandPeak] = {}
    for q in sorted(quarters, key=lambda q: q.start):
        local = plan.local(q.start)
        d = plan.demand_definition(local.date())
        excluded = d.demand.excluded_bands if d.demand is not None else ()
        if excluded and band_at(d, local)[1] in excluded:
            continue
        kw = q.kwh * 4.0
        key = (local.year, local.month)
        held = peaks.get(key)
        if held is None or kw > held.kw:
            peaks[key] = DemandPeak(local.year, local.month, kw, q.start)
    return peaks


@dataclass(frozen=True, slots=True)
class BilledDemand:
    """Billed demand in kW and why: which peak (month and quarter) or the contract floor."""

    kw: float
    basis: Literal["current_month", "ratchet", "contract_floor", "contract_power"]
    evidence: DemandPeak | None
    current_month_peak: DemandPeak | None
    floor_kw: float


def _months_back(year: int, month: int, n: int) -> list[tuple[int, int]]:
    out = []
    for back in range(n):
        index = year * 12 + (month - 1) - back
        out.append((index // 12, index % 12 + 1))
    return out


def billed_demand(
    rule: DemandRule,
    contract_kw: float,
    year: int,
    month: int,
    peaks: Mapping[tuple[int, int], DemandPeak],
) -> BilledDemand:
    """KEPCO's 요금적용전력 for ``year``-``month``.

    max(the month's own peak, the peaks of the ratchet months among the last
    ``ratchet_lookback_months`` months, the current one included), at least the floor.
    """
    if contract_kw < 0 or not math.isfinite(contract_kw):
        raise ValueError("contract power must be finite and >= 0")
    floor_kw = rule.min_fraction_of_contract * contract_kw
    current = peaks.get((year, month))
    best: DemandPeak | None = current
    basis: Literal["current_month", "ratchet", "contract_floor", "contract_power"] = "current_month"
    for ym in _months_back(year, month, rule.ratchet_lookback_months)[1:]:
        if ym[1] in rule.ratchet_months and ym in peaks:
            candidate = peaks[ym]
            if best is None or candidate.kw > best.kw:
                best, basis = candidate, "ratchet"
    if best is None:
        # No readings: KEPCO bills the floor; a tariff without one bills the contract power.
        if rule.min_fraction_of_contract > 0:
            return BilledDemand(floor_kw, "contract_floor", None, None, floor_kw)
        return BilledDemand(contract_kw, "contract_power", None, None, floor_kw)
    if best.kw < floor_kw:
        return BilledDemand(floor_kw, "contract_floor", best, current, floor_kw)
    return BilledDemand(best.kw, basis, best, current, floor_kw)


# --- the bill ----------------------------------------------------------------------------------


def _floor(value: float, step: int = 1) -> float:
    """Cut toward minus infinity to a multiple of ``step`` (decimal, so 0.1 + 0.2 is exact)."""
    d = _decimal(value) / step
    return float(d.quantize(Decimal(1), rounding=ROUND_FLOOR) * step)


def _decimal(value: float) -> Decimal:
    """``value`` as a Decimal that quantizes to whole units.

    A non-finite amount, or one of more digits than Decimal's 28 (stored data beyond the
    definition bounds), is a TariffError rather than a decimal.InvalidOperation from quantize.
    """
    if not math.isfinite(value) or abs(value) >= 1e26:
        raise TariffError("overflow", "the bill's amounts are too large to compute")
    return Decimal(repr(value))


def _round_half_up(value: float) -> float:
    return float(_decimal(value).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(slots=True)
class Bill:
    """One local month's bill, line by line, in the tariff's currency."""

    currency: str
    year: int
    month: int
    start: datetime  # UTC bounds of the local month (or of the part billed so far)
    end: datetime
    tariff: Tariff
    contract_kw: float
    demand: BilledDemand | None
    demand_charge: float
    energy: CostBreakdown
    energy_charge: float
    addons: dict[str, float]
    fixed_charge: float
    electricity_charge: float  # 전기요금계: demand + energy + add-ons + fixed
    fund: float
    vat: float
    total: float
    rounding: str
    complete: bool = True  # False: the month so far


def month_bill(
    plan: Plan,
    year: int,
    month: int,
    start: datetime,
    end: datetime,
    intervals: Iterable[Interval],
    peaks: Mapping[tuple[int, int], DemandPeak],
    contract_kw: float,
) -> Bill:
    """The bill of local month ``year``-``month`` for the energy of ``intervals``.

    The version valid on the month's first day sets the demand and fixed charges, the
    rounding and the percentage rates; each interval's energy is charged by its own day's
    version and per-kWh add-ons. Fixed daily charges count the days of [start, end).
    """
    first = date(year, month, 1)
    version = plan.version_on(first)
    d = version.definition
    energy = energy_cost(plan, intervals)
    kepco = d.rounding == "kepco"

    def cut(value: float, step: int = 1) -> float:
        return _floor(value, step) if kepco else value

    demand = None
    demand_charge = 0.0
    if d.demand is not None:
        demand = billed_demand(d.demand, contract_kw, year, month, peaks)
        demand_charge = cut(demand.kw * d.demand.charge_per_kw)
    # Local calendar days, not 24-hour spans: a month with a DST change back has 745 hours,
    # which ceil(hours / 24) billed as 32 days. A partial last day (a bill so far) counts.
    first_local, stop_local = start.astimezone(plan.zone), end.astimezone(plan.zone)
    days = (stop_local.date() - first_local.date()).days
    if stop_local.time() != time(0):
        days += 1
    days = max(0, days)
    fixed = cut(d.fixed_per_day * days + d.fixed_per_month)
    energy_charge = cut(energy.energy)
    addons = {name: cut(value) for name, value in energy.addons.items()}
    electricity = demand_charge + energy_charge + fixed + math.fsum(addons.values())
    fund_pct = sum(c.rate for c in plan.components_on(first, "percent_of_bill"))
    vat_pct = sum(c.rate for c in plan.components_on(first, "vat"))
    fund = cut(electricity * fund_pct / 100.0, 10)
    vat = _round_half_up(electricity * vat_pct / 100.0) if kepco else electricity * vat_pct / 100
    total = cut(electricity + fund + vat, 10)
    return Bill(
        currency=plan.currency,
        year=year,
        month=month,
        start=start,
        end=end,
        tariff=version,
        contract_kw=contract_kw,
        demand=demand,
        demand_charge=demand_charge,
        energy=energy,
        energy_charge=energy_charge,
        addons=addons,
        fixed_charge=fixed,
        electricity_charge=electricity,
        fund=fund,
        vat=vat,
        total=total,
        rounding=d.rounding,
    )


# --- forecast to month end ---------------------------------------------------------------------


@dataclass(slots=True)
class Forecast:
    """The month's bill projected to its end, and how."""

    bill: Bill
    method: str
    days_elapsed: int
    days_remaining: dict[str, int]  # day type -> days left in the month
    projected_kwh: float


def forecast_month(
    plan: Plan,
    year: int,
    month: int,
    month_start: datetime,
    month_end: datetime,
    now: datetime,
    intervals: Sequence[Interval],
    peaks: Mapping[tuple[int, int], DemandPeak],
    contract_kw: float,
) -> Forecast:
    """The energy so far plus, for each remaining hour, the mean of that hour on past days of
    its day type.

    Every whole local day before today with readings is an example of its day type (weekday,
    Saturday, Sunday, holiday). Each hour from the next whole hour to the month's end gets
    the mean kWh of the same local hour on past days of its type, or of all past days when
    none of its type has passed yet, or, on the month's first day, the mean kWh per hour so
    far. So the projected kWh land in the right time bands. Billed demand is the one known
    so far: it can only grow, and the ratchet usually holds it.
    """
    now = now.astimezone(UTC)
    today = plan.local(now).date()
    today_start = datetime(today.year, today.month, today.day, tzinfo=plan.zone).astimezone(UTC)
    actual = [i for i in intervals if month_start <= i.start < min(now, month_end)]
    profile: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    seen_days: dict[str, set[date]] = defaultdict(set)
    for i in actual:
        if i.start >= today_start:
            continue
        local = plan.local(i.start)
        kind = day_type(plan.version_on(local.date()).definition.days, local.date())
        for key in (kind, "any"):
            profile[key][local.hour].append(i.kwh)
            seen_days[key].add(local.date())
    elapsed_h = max(1.0, (min(now, month_end) - month_start) / timedelta(hours=1))
    flat = math.fsum(i.kwh for i in actual) / elapsed_h
    projected = list(actual)
    remaining: dict[str, int] = defaultdict(int)
    cursor = now.replace(minute=0, second=0, microsecond=0)
    if cursor < now:
        cursor += timedelta(hours=1)
    cursor = max(cursor, month_start)
    counted_days: set[date] = set()
    while cursor < month_end:
        local = plan.local(cursor)
        kind = day_type(plan.version_on(local.date()).definition.days, local.date())
        if local.date() not in counted_days and local.date() > today:
            counted_days.add(local.date())
            remaining[kind] += 1
        source = kind if seen_days.get(kind) else "any"
        n_days = len(seen_days.get(source, ()))
        kwh = math.fsum(profile[source][local.hour]) / n_days if n_days else flat
        projected.append(Interval(cursor, kwh))
        cursor += timedelta(hours=1)
    bill = month_bill(plan, year, month, month_start, month_end, projected, peaks, contract_kw)
    return Forecast(
        bill=bill,
        method=(
            "energy so far, plus each remaining hour at the mean of that local hour on the "
            "month's past days of its type (weekday, Saturday, Sunday, holiday; all past days "
            "when none of its type has passed; the mean kWh per hour so far on the first day); "
            "billed demand as known so far"
        ),
        days_elapsed=len(seen_days["any"]),
        days_remaining=dict(sorted(remaining.items())),
        projected_kwh=math.fsum(i.kwh for i in projected),
    )
