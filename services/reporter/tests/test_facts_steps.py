"""Each step of compute_facts alone, on a few hours computed by hand; properties of them all (pure).

The whole report's facts on a known data set are in test_facts_units.py; here each step is
given the smallest input that shows its rule.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pf_report_facts import known_inputs

from powerflow_common.queries import ScopeDevice
from powerflow_reporter.facts import (
    MAX_SCATTER_POINTS,
    FactInputs,
    FactorInfo,
    HourRow,
    NoData,
    PeriodHours,
    comparison_facts,
    compute_facts,
    coverage_facts,
    day_facts,
    device_facts,
    energy_facts,
    environment_facts,
    expected_device_hours,
    factor_facts,
    intensity_facts,
    period_facts,
    place,
    profile_facts,
    savings_facts,
)

SEOUL = ZoneInfo("Asia/Seoul")
# Monday 2026-03-02, local midnight in Seoul (15:00 UTC the day before).
MONDAY = datetime(2026, 3, 2, tzinfo=SEOUL).astimezone(UTC)
H = timedelta(hours=1)
A = ScopeDevice(1, "a", 1, "main", name="Main", location="basement")
B = ScopeDevice(2, "b", 2, "main", name=None, location=None)  # another site, no name
SUB = ScopeDevice(3, "sub", 1, "sub", name="Plug", location="office")  # not counted


def row(
    device: ScopeDevice,
    hour: int,
    kwh: float,
    *,
    unallocated_kwh: float = 0.0,
    coverage: float = 1.0,
    co2_kg: float | None = None,
    emission_factor_id: int | None = 1,
    power_max_w: float | None = None,
    temperature_c: float | None = None,
    humidity_pct: float | None = None,
    brightness_lux: float | None = None,
) -> HourRow:
    """Hour ``hour`` after MONDAY's local midnight; CO2 at 0.5 kg/kWh unless given."""
    return HourRow(
        device.id,
        MONDAY + hour * H,
        kwh,
        unallocated_kwh,
        coverage,
        (kwh + unallocated_kwh) * 0.5 if co2_kg is None else co2_kg,
        emission_factor_id,
        power_max_w=power_max_w,
        temperature_c=temperature_c,
        humidity_pct=humidity_pct,
        brightness_lux=brightness_lux,
    )


def inputs(
    rows: list[HourRow],
    *,
    days: int = 1,
    previous: list[HourRow] | None = None,
    counted: frozenset[int] = frozenset({1, 2}),
    tz: str = "Asia/Seoul",
    start: datetime = MONDAY,
) -> FactInputs:
    return FactInputs(
        scope="organisation",
        scope_label="organisation",
        tz=tz,
        start_utc=start,
        end_utc=start + days * 24 * H,
        devices=(A, B, SUB),
        counted_ids=counted,
        rows=rows,
        previous_rows=previous or [],
        factors=[],
    )


def hours_of(
    rows: list[HourRow],
    *,
    days: int = 1,
    previous: list[HourRow] | None = None,
    counted: frozenset[int] = frozenset({1, 2}),
) -> PeriodHours:
    return place(inputs(rows, days=days, previous=previous, counted=counted))


# --- place --------------------------------------------------------------------------------------


def test_place_keeps_the_periods_rows_of_known_devices_and_counts_by_the_counted_ids() -> None:
    hours = hours_of(
        [
            row(A, 0, 1.0),
            row(SUB, 0, 0.4),
            row(A, 24, 9.0),  # the next day: outside the period
            HourRow(99, MONDAY, 5.0, 0.0, 1.0, 0.0, None),  # no such device in the scope
        ]
    )
    assert [(r.device_id, r.counted, r.site_id) for r in hours.rows] == [
        (1, True, 1),
        (3, False, 1),
    ]
    assert [r.device_id for r in hours.counted] == [1]
    assert hours.total_kwh == 1.0


def test_a_row_placed_by_the_database_keeps_its_own_site_and_counting() -> None:
    moved = replace(row(SUB, 0, 0.4), site_id=7, counted=True)
    hours = hours_of([row(A, 0, 1.0), moved])
    assert [(r.device_id, r.site_id) for r in hours.counted] == [(1, 1), (3, 7)]


def test_energy_is_timed_by_utc_hour_and_summed_by_local_day() -> None:
    # Local 23:00 Monday and 00:00 Tuesday: one UTC day, two local days.
    hours = hours_of(
        [row(A, 23, 1.0, unallocated_kwh=0.5), row(A, 24, 2.0)],
        days=2,
    )
    monday, tuesday = MONDAY.astimezone(SEOUL).date(), (MONDAY + 24 * H).astimezone(SEOUL).date()
    assert hours.day_kwh == {monday: 1.5, tuesday: 2.0}
    assert hours.hour_kwh == {MONDAY + 23 * H: 1.0, MONDAY + 24 * H: 2.0}  # allocated only
    assert (hours.allocated_kwh, hours.unallocated_kwh, hours.total_kwh) == (3.0, 0.5, 3.5)
    assert hours.effective_factor == pytest.approx(0.5)  # unallocated energy is charged too


def test_no_counted_device_or_no_counted_row_is_no_data() -> None:
    with pytest.raises(NoData, match="no device in the scope counts"):
        hours_of([row(A, 0, 1.0)], counted=frozenset())
    with pytest.raises(NoData, match="no hourly data"):
        hours_of([row(SUB, 0, 1.0)])


# --- period -------------------------------------------------------------------------------------


def test_the_period_is_cut_in_local_days_a_dst_day_has_23_hours() -> None:
    new_york = ZoneInfo("America/New_York")
    start = datetime(2026, 3, 8, tzinfo=new_york).astimezone(UTC)  # clocks go forward at 02:00
    end = datetime(2026, 3, 9, tzinfo=new_york).astimezone(UTC)
    facts = period_facts(replace(inputs([], tz="America/New_York", start=start), end_utc=end))
    assert facts.value("period_start_date") == facts.value("period_end_date") == "2026-03-08"
    assert facts.value("period_days") == 1
    assert facts.value("period_hours") == 23
    assert facts.value("timezone") == "America/New_York"


# --- energy and factors -------------------------------------------------------------------------


def test_each_sites_contracts_cover_only_its_own_consumption() -> None:
    # Site 1: 10 kWh, 5 kg, 4 kWh contracted -> 6/10 of 5 kg. Site 2: 10 kWh, 4 kg, none.
    hours = hours_of([row(A, 0, 10.0, co2_kg=5.0), row(B, 0, 10.0, co2_kg=4.0)])
    facts = energy_facts(hours, {1: 4.0})
    assert facts.number("co2_location_kg") == 9.0
    assert facts.number("co2_market_kg") == pytest.approx(3.0 + 4.0)
    assert facts.number("renewable_covered_kwh") == 4.0
    assert facts.number("total_gj") == pytest.approx(20 * 0.0036)
    assert facts.number("effective_factor_kg_per_kwh") == pytest.approx(0.45)
    assert "4 kWh covered" in facts.notes["scope2"]


def test_a_contract_larger_than_the_sites_use_covers_its_use_only() -> None:
    facts = energy_facts(hours_of([row(A, 0, 2.0, co2_kg=1.0)]), {1: 50.0})
    assert facts.number("co2_market_kg") == 0.0
    assert facts.number("renewable_covered_kwh") == 2.0
    assert facts.number("contracted_renewable_kwh") == 50.0


def test_unallocated_energy_counts_in_the_total_and_its_share() -> None:
    facts = energy_facts(hours_of([row(A, 0, 3.0, unallocated_kwh=1.0)]), {})
    assert facts.number("total_kwh") == 4.0
    assert facts.number("unallocated_pct") == 25.0


def test_two_factors_have_no_single_value_and_hours_with_energy_but_no_factor_count() -> None:
    factors = [
        FactorInfo(2, "kr-2026", "KR", 0.45, "KEA 2026", "location"),
        FactorInfo(1, "original", "KR", 0.478, "prototype", "location"),
        FactorInfo(3, "unused", "KR", 0.1, "never", "location"),
    ]
    hours = hours_of(
        [
            row(A, 0, 1.0, emission_factor_id=1),
            row(A, 1, 1.0, emission_factor_id=2),
            row(A, 2, 1.0, emission_factor_id=None),
            row(A, 3, 0.0, emission_factor_id=None),  # no energy: nothing to charge
        ]
    )
    facts = factor_facts(hours, factors)
    assert facts.value("factor_kg_per_kwh") is None
    assert facts.value("factor_source") == "prototype; KEA 2026"
    assert facts.value("factor_set") == "kr-2026, original"
    assert facts.value("factor_count") == 2
    assert facts.value("hours_without_factor") == 1
    assert [f["id"] for f in facts.tables["factors"]] == [1, 2]


# --- devices, days, profile ---------------------------------------------------------------------


def test_devices_rank_by_energy_then_code_and_sub_meters_are_listed_not_counted() -> None:
    hours = hours_of([row(A, 0, 2.0), row(B, 0, 2.0), row(SUB, 0, 3.0)])
    facts = device_facts([A, B, SUB], frozenset({1, 2}), hours)
    table = facts.tables["by_device"]
    assert [(d["code"], d["counted"], d["share_pct"]) for d in table] == [
        ("sub", False, 75.0),  # a share of the counted total, which it is not part of
        ("a", True, 50.0),
        ("b", True, 50.0),
    ]
    assert table[2]["label"] == "b"  # no name: its code
    assert (facts.value("device_count"), facts.value("counted_device_count")) == (3, 2)
    assert facts.value("device_top1_name") == "Plug"
    assert facts.value("device_top4_name") is None
    assert facts.value("device_top5_kwh") is None


def test_days_weekdays_and_weekend_and_the_earliest_of_equal_days() -> None:
    # Mon 2, Tue 2, Wed 1, Thu 1, Fri 1, Sat 4, Sun 3 (kWh at local noon).
    per_day = [2.0, 2.0, 1.0, 1.0, 1.0, 4.0, 3.0]
    hours = hours_of([row(A, 24 * d + 12, kwh) for d, kwh in enumerate(per_day)], days=7)
    facts = day_facts(hours)
    assert facts.value("max_day_date") == "2026-03-07"
    assert facts.value("min_day_date") == "2026-03-04"  # Wed, Thu and Fri: the earliest
    assert facts.number("avg_daily_kwh") == pytest.approx(2.0)
    assert facts.number("weekday_avg_daily_kwh") == pytest.approx(1.4)
    assert facts.number("weekend_avg_daily_kwh") == pytest.approx(3.5)
    assert facts.number("weekend_vs_weekday_pct") == pytest.approx(250.0)
    assert [d["weekday"] for d in facts.tables["by_day"]] == [0, 1, 2, 3, 4, 5, 6]


def test_the_profile_night_base_load_and_the_earliest_peak_hour() -> None:
    # Local 01:00 0.2 kWh, 03:00 0.4, 12:00 3.0, 15:00 3.0, 20:00 1.4.
    hours = hours_of(
        [
            row(A, 1, 0.2),
            row(A, 3, 0.4, power_max_w=900.0),
            row(A, 12, 3.0),
            row(A, 15, 3.0),
            row(A, 20, 1.4),
        ]
    )
    facts = profile_facts(hours)
    assert facts.number("night_base_load_w") == pytest.approx(300.0)
    assert facts.number("min_hour_w") == pytest.approx(200.0)
    assert facts.number("peak_hour_w") == pytest.approx(3000.0)
    assert facts.value("peak_hour_start") == "2026-03-02 12:00"
    assert facts.number("peak_device_max_w") == 900.0
    assert facts.number("avg_power_w") == pytest.approx(8.0 / 5 * 1000)
    profile = {p["hour"]: p["avg_w"] for p in facts.tables["hourly_profile"]}
    assert profile[12] == pytest.approx(3000.0)
    assert profile[2] is None


# --- comparison, coverage, intensity ------------------------------------------------------------


def test_the_change_is_against_the_previous_periods_counted_energy() -> None:
    previous = [row(A, -24, 4.0), row(SUB, -24, 100.0)]
    facts = comparison_facts(hours_of([row(A, 0, 5.0)], previous=previous))
    assert facts.number("previous_total_kwh") == 4.0
    assert facts.number("change_kwh") == 1.0
    assert facts.number("change_pct") == 25.0


def test_without_a_previous_period_or_with_nothing_in_it_there_is_no_change_pct() -> None:
    none = comparison_facts(hours_of([row(A, 0, 5.0)]))
    assert none.value("change_kwh") is None and none.value("change_pct") is None
    zero = comparison_facts(hours_of([row(A, 0, 5.0)], previous=[row(A, -24, 0.0)]))
    assert zero.number("change_kwh") == 5.0 and zero.value("change_pct") is None


def test_coverage_is_against_every_counted_device_hour_of_the_period() -> None:
    made = inputs([row(A, 0, 1.0, coverage=0.4), row(A, 1, 1.0), row(B, 0, 1.0)])
    assert expected_device_hours(made) == 48  # two counted devices, 24 hours
    assert expected_device_hours(replace(made, counted_device_hours=30)) == 30
    facts = coverage_facts(place(made), 48)
    assert facts.number("coverage_pct") == pytest.approx(2.4 / 48 * 100)
    assert facts.value("hours_with_data") == 2
    assert facts.value("missing_device_hours") == 45
    assert facts.value("gap_device_hours") == 46  # and the hour at 40%


def test_intensity_needs_a_floor_area() -> None:
    assert intensity_facts(50.0, 200.0).number("intensity_kwh_per_m2") == 0.25
    assert intensity_facts(50.0, None).value("intensity_kwh_per_m2") is None
    assert intensity_facts(50.0, 0.0).value("intensity_kwh_per_m2") is None


# --- environment and savings --------------------------------------------------------------------


def test_correlations_are_pearsons_r_over_hours_with_the_sensor() -> None:
    rows = [row(A, h, 0.1 * h, temperature_c=float(h), humidity_pct=50.0) for h in range(1, 6)]
    rows.append(row(A, 6, 9.0))  # no sensor: not a pair
    facts = environment_facts(hours_of(rows))
    assert facts.number("corr_temperature_r") == pytest.approx(1.0)
    assert facts.value("corr_temperature_n") == 5
    assert facts.value("corr_humidity_r") is None  # no variance
    assert facts.value("corr_brightness_r") is None and facts.value("corr_brightness_n") == 0
    assert facts.value("daily_kwh_per_c_slope") is None  # one day: fewer than 3


def test_the_scatter_is_thinned_to_at_most_its_limit() -> None:
    rows = [row(A, h, 1.0, temperature_c=float(h % 30)) for h in range(24 * 40)]
    facts = environment_facts(hours_of(rows, days=40))
    assert len(facts.tables["temperature_power"]) <= MAX_SCATTER_POINTS
    assert len(facts.tables["temperature_power"]) == 480  # every second of 960


def test_savings_are_the_night_above_the_lowest_hour_and_light_in_daylight() -> None:
    # Night hours 0.5 and 0.3 kWh, lowest hour 0.1; one bright hour 2.0 above the 0.1 floor.
    rows = [
        row(A, 0, 0.5),
        row(A, 1, 0.3),
        row(A, 10, 0.1, brightness_lux=0.0),
        row(A, 12, 2.1, brightness_lux=800.0),
    ]
    facts = savings_facts(hours_of(rows))
    assert facts.number("savings_night_base_kwh") == pytest.approx((400 - 100) * 2 / 1000)
    assert facts.number("savings_bright_lighting_kwh") == pytest.approx(2.0)
    assert facts.number("savings_bright_lighting_kg") == pytest.approx(2.0 * 0.5)
    assert facts.number("savings_bright_lighting_pct") == pytest.approx(2.0 / 3.0 * 100)


def test_without_night_hours_or_light_sensors_there_is_no_potential() -> None:
    facts = savings_facts(hours_of([row(A, 12, 1.0)]))
    assert facts.value("savings_night_base_kwh") is None
    assert facts.value("savings_bright_lighting_kwh") is None
    assert facts.value("savings_bright_lighting_pct") is None


# --- properties ---------------------------------------------------------------------------------

# Whatever the data, a report has these facts in this order (the glossary, the prompt's cache).
FACT_IDS_IN_ORDER = list(compute_facts(known_inputs()).values)
_hour_rows = st.lists(
    st.tuples(
        st.sampled_from([A, B, SUB]),
        st.integers(0, 47),
        st.floats(0, 50, allow_nan=False),
        st.floats(0, 5, allow_nan=False),
        st.one_of(st.none(), st.floats(-10, 40, allow_nan=False)),
    ),
    min_size=1,
    max_size=60,
    unique_by=lambda t: (t[0].id, t[1]),
).filter(lambda rows: any(t[0] is not SUB for t in rows))


def _inputs(rows: list[tuple[ScopeDevice, int, float, float, float | None]]) -> FactInputs:
    return replace(
        known_inputs(),
        devices=[A, B, SUB],
        counted_ids=frozenset({1, 2}),
        start_utc=MONDAY,
        end_utc=MONDAY + 48 * H,
        rows=[row(d, h, kwh, unallocated_kwh=u, temperature_c=t) for d, h, kwh, u, t in rows],
        previous_rows=[],
    )


@given(_hour_rows)
def test_every_report_has_the_same_facts_in_the_same_order(
    rows: list[tuple[ScopeDevice, int, float, float, float | None]],
) -> None:
    assert list(compute_facts(_inputs(rows)).values) == FACT_IDS_IN_ORDER


@given(_hour_rows)
def test_the_total_is_the_sum_of_the_days_and_of_the_counted_devices(
    rows: list[tuple[ScopeDevice, int, float, float, float | None]],
) -> None:
    facts = compute_facts(_inputs(rows))
    total = facts.number("total_kwh")
    assert total is not None
    by_day = sum(d["kwh"] for d in facts.tables["by_day"])
    counted = [d for d in facts.tables["by_device"] if d["counted"]]
    assert by_day == pytest.approx(total, abs=1e-9)
    assert sum(d["kwh"] for d in counted) == pytest.approx(total, abs=1e-9)
    if total > 0:
        assert sum(d["share_pct"] for d in counted) == pytest.approx(100.0)
    coverage = facts.number("coverage_pct")
    assert coverage is not None and 0 < coverage <= 100
