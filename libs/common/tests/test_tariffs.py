"""Tariffs and KEPCO's bill: a fixture month computed by hand, and properties of the rules."""

from __future__ import annotations

import importlib.util
import math
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from types import ModuleType
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import powerflow_common.db.migrations as migrations_pkg
from powerflow_common.tariffs import (
    Bill,
    Component,
    ComponentKind,
    DayRules,
    DemandPeak,
    DemandRule,
    Interval,
    Plan,
    Season,
    Tariff,
    TariffDefinition,
    TariffError,
    TariffNotFound,
    billed_demand,
    day_type,
    energy_cost,
    forecast_month,
    month_bill,
    monthly_peaks,
    select_tariff,
    validate_definition,
)

SEOUL = ZoneInfo("Asia/Seoul")
OFF, M, P = "off_peak", "mid_peak", "on_peak"
# KEPCO's bands: off-peak 23-09; summer/spring-autumn on-peak 10-12 and 13-17; winter on-peak
# 10-12, 17-20 and 22-23; the rest mid-peak.
SUMMER_HOURS = (OFF,) * 9 + (M,) + (P,) * 2 + (M,) + (P,) * 4 + (M,) * 6 + (OFF,)
WINTER_HOURS = (OFF,) * 9 + (M,) + (P,) * 2 + (M,) * 5 + (P,) * 3 + (M,) * 2 + (P,) + (OFF,)

FIXTURE = TariffDefinition(
    currency="KRW",
    seasons=(
        Season(
            name="summer", months=(6, 7, 8), hours=SUMMER_HOURS, rates={OFF: 90, M: 140, P: 250}
        ),
        Season(
            name="spring_autumn",
            months=(3, 4, 5, 9, 10),
            hours=SUMMER_HOURS,
            rates={OFF: 80.3, M: 100.0, P: 120.5},
        ),
        Season(
            name="winter",
            months=(11, 12, 1, 2),
            hours=WINTER_HOURS,
            rates={OFF: 100, M: 150, P: 200},
        ),
    ),
    days=DayRules(
        saturday={P: M},
        sunday_band=OFF,
        holiday_band=OFF,
        holiday_country="KR",
        holiday_exclude=("Alternative holiday", "Election Day", "Labor Day", "Constitution"),
    ),
    demand=DemandRule(
        charge_per_kw=8000.0,
        ratchet_months=(12, 1, 2, 7, 8, 9),
        ratchet_lookback_months=12,
        min_fraction_of_contract=0.3,
        excluded_bands=(OFF,),
    ),
    component_set="T",
    rounding="kepco",
)
TARIFF = Tariff(
    id=1,
    name="fixture",
    label="fixture of KEPCO's structure",
    valid_from=date(2020, 1, 1),
    valid_to=None,
    source="test",
    definition=FIXTURE,
)
OPEN = date(2020, 1, 1)
COMPONENTS = (
    Component(
        id=1, component_set="T", name="climate", kind="per_kwh", rate=9.0,
        valid_from=OPEN, valid_to=None, source="t",
    ),
    Component(
        id=2, component_set="T", name="fuel", kind="per_kwh", rate=5.0,
        valid_from=OPEN, valid_to=None, source="t",
    ),
    Component(
        id=3, component_set="T", name="fund", kind="percent_of_bill", rate=3.2,
        valid_from=OPEN, valid_to=None, source="t",
    ),
    Component(
        id=4, component_set="T", name="vat", kind="vat", rate=10.0,
        valid_from=OPEN, valid_to=None, source="t",
    ),
)  # fmt: skip


def plan() -> Plan:
    return Plan([TARIFF], COMPONENTS, "Asia/Seoul")


def local(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SEOUL).astimezone(UTC)


def hour(y: int, mo: int, d: int, h: int, kwh: float) -> Interval:
    return Interval(local(y, mo, d, h), kwh)


def quarter(y: int, mo: int, d: int, h: int, mi: int, kwh: float) -> Interval:
    return Interval(local(y, mo, d, h, mi), kwh)


# May 2026 in Seoul: Tuesday 5 May is Children's Day (a holiday KEPCO bills off-peak).
MAY_ENERGY = [
    hour(2026, 5, 4, 10, 10.0),  # Monday, on-peak: 10 x 120.5 = 1,205.0
    hour(2026, 5, 4, 9, 6.0),  # Monday, mid-peak: 6 x 100.0 = 600.0
    hour(2026, 5, 4, 3, 20.0),  # Monday night, off-peak: 20 x 80.3 = 1,606.0
    hour(2026, 5, 5, 10, 8.0),  # Children's Day 10:00, off-peak: 8 x 80.3 = 642.4
    hour(2026, 5, 9, 14, 5.0),  # Saturday on-peak hour billed mid-peak: 5 x 100.0 = 500.0
    hour(2026, 5, 10, 14, 3.0),  # Sunday, off-peak: 3 x 80.3 = 240.9
]
QUARTERS = [
    quarter(2026, 5, 4, 10, 15, 30.0),  # May peak: 30 kWh in 15 min = 120 kW (on-peak)
    quarter(2026, 5, 4, 3, 0, 50.0),  # 200 kW, but off-peak: never a peak
    quarter(2026, 5, 5, 10, 0, 45.0),  # 180 kW on Children's Day: off-peak, never a peak
    quarter(2026, 4, 15, 9, 30, 50.0),  # April 200 kW: not a ratchet month
    quarter(2026, 1, 14, 11, 0, 40.0),  # January 160 kW: ratchet month, in the window
    quarter(2025, 8, 20, 14, 0, 35.0),  # August 2025 140 kW: ratchet month, in the window
    quarter(2025, 2, 10, 11, 0, 100.0),  # February 2025 400 kW: out of the 12 months
]
MAY_START, MAY_END = local(2026, 5, 1, 0), local(2026, 6, 1, 0)


def may_bill(contract_kw: float) -> Bill:
    p = plan()
    return month_bill(
        p, 2026, 5, MAY_START, MAY_END, MAY_ENERGY, monthly_peaks(p, QUARTERS), contract_kw
    )


def test_bill_of_a_fixture_month_by_hand_ratchet_sets_billed_demand() -> None:
    bill = may_bill(400.0)
    # Bands: on-peak 10 kWh; mid-peak 6 + 5 (Saturday) = 11 kWh; off-peak 20 + 8 + 3 = 31 kWh.
    assert bill.energy.kwh_by_band == {M: 11.0, OFF: 31.0, P: 10.0}
    # Energy: 1,205.0 + 1,100.0 + 31 x 80.3 (2,489.3) = 4,794.3, cut to 4,794 won.
    assert bill.energy.energy == pytest.approx(4794.3)
    assert bill.energy_charge == 4794
    # Billed demand: May's own peak 120 kW (the off-peak and holiday quarters do not count),
    # January's 160 kW and August 2025's 140 kW are ratchet months within 12 months; April's
    # 200 kW is not a ratchet month, February 2025 is out of the window. Floor 0.3 x 400 = 120.
    demand = bill.demand
    assert demand is not None and demand.evidence is not None
    assert demand.current_month_peak is not None
    assert (demand.kw, demand.basis) == (160.0, "ratchet")
    assert demand.evidence.quarter_start == local(2026, 1, 14, 11)
    assert demand.current_month_peak.kw == 120.0
    # Demand charge: 160 kW x 8,000 = 1,280,000. Add-ons: 52 kWh x 9 = 468; 52 x 5 = 260.
    assert bill.demand_charge == 1_280_000
    assert bill.addons == {"climate": 468, "fuel": 260}
    # Electricity charge: 1,280,000 + 4,794 + 468 + 260 = 1,285,522.
    assert bill.electricity_charge == 1_285_522
    # Fund 3.2 %: 41,136.704 cut to 10 won = 41,130. VAT 10 %: 128,552.2 rounded = 128,552.
    assert bill.fund == 41_130
    assert bill.vat == 128_552
    # Billed: 1,285,522 + 41,130 + 128,552 = 1,455,204, cut to 10 won = 1,455,200.
    assert bill.total == 1_455_200


def test_bill_of_a_fixture_month_by_hand_contract_floor_sets_billed_demand() -> None:
    bill = may_bill(600.0)
    demand = bill.demand
    assert demand is not None
    # Floor 0.3 x 600 = 180 kW is above the 160 kW ratchet peak.
    assert (demand.kw, demand.basis, demand.floor_kw) == (180.0, "contract_floor", 180.0)
    # 180 x 8,000 = 1,440,000; + 4,794 + 468 + 260 = 1,445,522.
    assert bill.electricity_charge == 1_445_522
    # Fund 46,256.704 -> 46,250; VAT 144,552.2 -> 144,552; 1,636,324 -> 1,636,320.
    assert (bill.fund, bill.vat, bill.total) == (46_250, 144_552, 1_636_320)


def test_day_type_holidays_are_the_tariffs_named_days() -> None:
    rules = FIXTURE.days
    assert day_type(rules, date(2026, 5, 5)) == "holiday"  # Children's Day
    assert day_type(rules, date(2026, 5, 25)) == "weekday"  # substitute day: not named
    assert day_type(rules, date(2026, 5, 9)) == "saturday"
    assert day_type(rules, date(2026, 5, 10)) == "sunday"
    assert day_type(rules, date(2026, 5, 4)) == "weekday"


def test_billed_demand_without_readings_is_the_floor() -> None:
    rule = FIXTURE.demand
    assert rule is not None
    result = billed_demand(rule, 500.0, 2026, 5, {})
    assert (result.kw, result.basis, result.evidence) == (150.0, "contract_floor", None)


def test_select_tariff_takes_the_version_of_the_day() -> None:
    newer = msgspec.structs.replace(TARIFF, id=2, valid_from=date(2026, 6, 1))
    assert select_tariff([TARIFF, newer], "fixture", date(2026, 5, 31)).id == 1
    assert select_tariff([TARIFF, newer], "fixture", date(2026, 6, 1)).id == 2
    with pytest.raises(TariffNotFound):
        select_tariff([TARIFF], "fixture", date(2019, 12, 31))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"currency": "won"}, "bad_currency"),
        ({"seasons": ()}, "bad_seasons"),
        ({"seasons": FIXTURE.seasons[:2]}, "bad_months"),
        ({"days": DayRules(sunday_band="nope")}, "unknown_band"),
        ({"days": DayRules(holiday_country="XX")}, "unknown_country"),
        ({"fixed_per_day": -1.0}, "bad_fixed_charge"),
        ({"demand": DemandRule(charge_per_kw=1.0, min_fraction_of_contract=2)}, "bad_floor"),
    ],
)
def test_validate_definition_rejects_what_cannot_be_billed(
    change: dict[str, object], reason: str
) -> None:
    with pytest.raises(TariffError) as caught:
        validate_definition(msgspec.structs.replace(FIXTURE, **change))
    assert caught.value.reason == reason


def test_forecast_projects_remaining_days_by_day_type() -> None:
    # 1-3 June 2026 (Mon-Wed; 3 June is an election day, not billed as a holiday): 1 kWh in
    # every hour, and the 4th's first 12 hours. From noon on the 4th every remaining hour
    # gets the past days' 1 kWh: 30 days x 24 kWh in all; 26 whole days remain.
    p = plan()
    start, end = local(2026, 6, 1, 0), local(2026, 7, 1, 0)
    energy = [
        Interval(start + timedelta(hours=h), 1.0)
        for h in range(3 * 24 + 12)  # 12 hours of the 4th too: replaced by the average
    ]
    forecast = forecast_month(p, 2026, 6, start, end, local(2026, 6, 4, 12), energy, {}, 100.0)
    assert forecast.days_elapsed == 3
    assert forecast.projected_kwh == pytest.approx(30 * 24)
    assert sum(forecast.days_remaining.values()) == 26
    # Saturdays and Sundays have no past example: they take all past days' profile.
    assert forecast.days_remaining["sunday"] == 4


def test_seed_migration_tariffs_and_components_are_valid() -> None:
    module = _migration()
    for row in module.SEED_TARIFFS:
        definition = msgspec.convert(row["definition"], TariffDefinition)
        validate_definition(definition)
        assert definition.currency == row["currency"]
        assert row["source"]
    kepco = [r for r in module.SEED_TARIFFS if r["name"].startswith("kepco-")]
    assert {r["name"] for r in kepco} == {
        "kepco-general-b-high-a-ii",
        "kepco-industrial-b-high-a-ii",
    }
    names = {c["name"] for c in module.SEED_COMPONENTS}
    assert names == {"climate_environment", "fuel_cost_adjustment", "power_industry_fund", "vat"}
    components = [msgspec.convert(c, Component) for c in module.SEED_COMPONENTS]
    # Each add-on has one version valid on any day: the versions of a name do not overlap.
    by_name: dict[str, list[Component]] = {}
    for c in components:
        by_name.setdefault(c.name, []).append(c)
    for versions in by_name.values():
        versions.sort(key=lambda c: c.valid_from)
        for older, newer in pairwise(versions):
            assert older.valid_to == newer.valid_from
    kepco_plan = Plan([msgspec.convert({**kepco[0], "id": 1}, Tariff)], components, "Asia/Seoul")
    on = date(2026, 7, 15)
    kinds: tuple[ComponentKind, ...] = ("per_kwh", "percent_of_bill", "vat")
    rates = {c.name: c.rate for k in kinds for c in kepco_plan.components_on(on, k)}
    # The fund fell to 2.7 % from July 2025 (전기사업법 시행령 제36조).
    assert rates == {
        "climate_environment": 9.0,
        "fuel_cost_adjustment": 5.0,
        "power_industry_fund": 2.7,
        "vat": 10.0,
    }


def _migration() -> ModuleType:
    path = Path(migrations_pkg.__path__[0]) / "versions" / "0010_tariffs.py"
    spec = importlib.util.spec_from_file_location("migration_0010", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- properties ----------------------------------------------------------------------------------

MAY_HOURS = st.integers(min_value=0, max_value=31 * 24 - 1)
KWH = st.floats(min_value=0.0, max_value=1e4, allow_nan=False)
INTERVALS = st.lists(st.tuples(MAY_HOURS, KWH), max_size=30).map(
    lambda items: [Interval(MAY_START + timedelta(hours=h), k) for h, k in items]
)


@given(INTERVALS, st.integers(min_value=0, max_value=29), KWH)
def test_cost_is_monotone_in_kwh(items: list[Interval], index: int, extra: float) -> None:
    p = plan()
    before = energy_cost(p, items)
    if items:
        i = index % len(items)
        items = [*items[:i], Interval(items[i].start, items[i].kwh + extra), *items[i + 1 :]]
    after = energy_cost(p, items)
    assert after.total >= before.total - 1e-9 * max(1.0, before.total)


@given(INTERVALS, st.integers(min_value=0, max_value=30))
def test_splitting_a_period_does_not_change_energy_charges(items: list[Interval], cut: int) -> None:
    p = plan()
    whole = energy_cost(p, items)
    a, b = energy_cost(p, items[:cut]), energy_cost(p, items[cut:])
    assert math.isclose(whole.energy, a.energy + b.energy, rel_tol=1e-12, abs_tol=1e-9)
    assert math.isclose(whole.total, a.total + b.total, rel_tol=1e-12, abs_tol=1e-9)
    for band in whole.kwh_by_band:
        parts = a.kwh_by_band.get(band, 0.0) + b.kwh_by_band.get(band, 0.0)
        assert math.isclose(whole.kwh_by_band[band], parts, rel_tol=1e-12, abs_tol=1e-9)


@given(INTERVALS, st.floats(min_value=0.0, max_value=1e5))
def test_bill_is_at_least_its_fixed_and_floor_charges(
    items: list[Interval], contract_kw: float
) -> None:
    fixed = msgspec.structs.replace(FIXTURE, fixed_per_day=100.0, fixed_per_month=1000.0)
    p = Plan([msgspec.structs.replace(TARIFF, definition=fixed)], COMPONENTS, "Asia/Seoul")
    bill = month_bill(p, 2026, 5, MAY_START, MAY_END, items, {}, contract_kw)
    assert bill.demand is not None
    assert bill.demand.kw >= 0.3 * contract_kw - 1e-9
    assert bill.fixed_charge == 31 * 100 + 1000  # 31 days of May
    floor_charge = math.floor(0.3 * contract_kw * 8000.0)
    assert bill.total >= floor_charge + bill.fixed_charge - 10
    assert bill.total >= bill.electricity_charge - 10


@given(st.lists(st.tuples(st.integers(1, 18), st.floats(0, 1e4)), max_size=18), st.floats(0, 1e4))
def test_billed_demand_is_at_least_the_months_own_peak_and_the_floor(
    past: list[tuple[int, float]], contract_kw: float
) -> None:
    rule = FIXTURE.demand
    assert rule is not None
    peaks: dict[tuple[int, int], DemandPeak] = {}
    for back, kw in past:
        index = 2026 * 12 + 4 - back
        ym = (index // 12, index % 12 + 1)
        peaks[ym] = DemandPeak(ym[0], ym[1], kw, MAY_START)
    peaks[(2026, 5)] = DemandPeak(2026, 5, 10.0, MAY_START)
    result = billed_demand(rule, contract_kw, 2026, 5, peaks)
    assert result.kw >= 10.0
    assert result.kw >= 0.3 * contract_kw
    in_window = [
        p.kw
        for (y, m), p in peaks.items()
        if m in rule.ratchet_months and (y * 12 + m) > 2026 * 12 + 5 - 12
    ]
    assert result.kw == max([10.0, 0.3 * contract_kw, *in_window])


@pytest.mark.parametrize(
    ("charge", "fund_pct", "fund", "vat", "total"),
    [
        # A 2017 KEPCO bill: fund 10,183 x 3.7 % = 376.8 -> 370; VAT 1,018.3 -> 1,018.
        (10_183, 3.7, 370, 1_018, 11_570),
        # A published worked example: fund 833.5 -> 830; VAT 2,252.7 -> 2,253; 25,610.
        (22_527, 3.7, 830, 2_253, 25_610),
    ],
)
def test_rounding_matches_published_kepco_bills(
    charge: int, fund_pct: float, fund: int, vat: int, total: int
) -> None:
    flat = TariffDefinition(
        currency="KRW",
        seasons=(
            Season(name="all", months=tuple(range(1, 13)), hours=("f",) * 24, rates={"f": 1.0}),
        ),
        component_set="R",
        rounding="kepco",
    )
    tariff = msgspec.structs.replace(TARIFF, definition=flat)
    parts = (
        Component(
            id=1, component_set="R", name="fund", kind="percent_of_bill", rate=fund_pct,
            valid_from=OPEN, valid_to=None, source="t",
        ),
        Component(
            id=2, component_set="R", name="vat", kind="vat", rate=10.0,
            valid_from=OPEN, valid_to=None, source="t",
        ),
    )  # fmt: skip
    p = Plan([tariff], parts, "Asia/Seoul")
    bill = month_bill(p, 2026, 5, MAY_START, MAY_END, [Interval(MAY_START, float(charge))], {}, 0.0)
    assert bill.electricity_charge == charge
    assert (bill.fund, bill.vat, bill.total) == (fund, vat, total)


@pytest.mark.parametrize(
    ("zone", "year", "month", "days"),
    [
        ("Europe/London", 2025, 10, 31),  # 31 local days; 745 hours (clocks go back on the 26th)
        ("America/New_York", 2025, 11, 30),  # 30 local days; 721 hours (back on the 2nd)
        ("Europe/London", 2025, 3, 31),  # 31 local days; 743 hours (forward on the 30th)
    ],
)
def test_fixed_daily_charge_counts_local_days_not_24_hour_spans(
    zone: str, year: int, month: int, days: int
) -> None:
    tz = ZoneInfo(zone)
    defn = msgspec.structs.replace(FIXTURE, fixed_per_day=1.0, fixed_per_month=0.0, demand=None)
    p = Plan([msgspec.structs.replace(TARIFF, definition=defn)], COMPONENTS, zone)
    start = datetime(year, month, 1, tzinfo=tz).astimezone(UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=tz).astimezone(UTC)
    assert month_bill(p, year, month, start, end, [], {}, 0.0).fixed_charge == days
    # A bill so far (to noon on the 3rd) counts the days it touches: 1st, 2nd and 3rd.
    noon3 = datetime(year, month, 3, 12, tzinfo=tz).astimezone(UTC)
    assert month_bill(p, year, month, start, noon3, [], {}, 0.0).fixed_charge == 3
