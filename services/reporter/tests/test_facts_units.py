"""Facts against values computed by hand on a small known data set (pure, no database)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from pf_report_facts import START, known_inputs

from powerflow_reporter.facts import (
    FactInputs,
    HourRow,
    NoData,
    compute_facts,
)
from powerflow_reporter.formatting import facts_json
from powerflow_reporter.grounding import fill_placeholders, find_offences


def test_totals_count_the_main_meter_only_and_include_unallocated_energy() -> None:
    facts = compute_facts(known_inputs())
    # Fri 21.5 - 0.3, Sat 21.5 + 2.0, Sun 21.5 + 0.6 unallocated.
    assert facts.number("total_kwh") == pytest.approx(66.8)
    assert facts.number("allocated_kwh") == pytest.approx(66.2)
    assert facts.number("unallocated_kwh") == pytest.approx(0.6)
    assert facts.number("co2_location_kg") == pytest.approx(66.8 * 0.478)
    assert facts.number("co2_market_kg") == pytest.approx(66.8 * 0.478)
    assert facts.number("total_gj") == pytest.approx(66.8 * 0.0036)
    assert facts.value("factor_kg_per_kwh") == 0.478
    assert facts.value("factor_source") == "powerflow prototype"
    assert facts.number("intensity_kwh_per_m2") == pytest.approx(0.668)


def test_by_day_weekday_weekend_and_change_match_hand_computed_values() -> None:
    facts = compute_facts(known_inputs())
    days = {d["date"]: d["kwh"] for d in facts.tables["by_day"]}
    assert days == pytest.approx({"2026-03-06": 21.2, "2026-03-07": 23.5, "2026-03-08": 22.1})
    assert facts.value("max_day_date") == "2026-03-07"
    assert facts.value("min_day_date") == "2026-03-06"
    assert facts.number("avg_daily_kwh") == pytest.approx(66.8 / 3)
    assert facts.number("weekday_avg_daily_kwh") == pytest.approx(21.2)
    assert facts.number("weekend_avg_daily_kwh") == pytest.approx(22.8)
    assert facts.number("previous_total_kwh") == pytest.approx(57.6)
    assert facts.number("change_kwh") == pytest.approx(9.2)
    assert facts.number("change_pct") == pytest.approx(9.2 / 57.6 * 100)


def test_profile_peak_base_load_and_coverage_match_hand_computed_values() -> None:
    facts = compute_facts(known_inputs())
    profile = {p["hour"]: p["avg_w"] for p in facts.tables["hourly_profile"]}
    assert profile[3] == pytest.approx((200 + 500 + 500) / 3)
    assert profile[14] == pytest.approx((1000 + 3000 + 1000) / 3)
    assert facts.number("night_base_load_w") == pytest.approx(7.2 / 15 * 1000)
    assert facts.number("min_hour_w") == pytest.approx(200)
    assert facts.number("peak_hour_w") == pytest.approx(3000)
    assert facts.value("peak_hour_start") == "2026-03-07 14:00"
    assert facts.number("peak_device_max_w") == pytest.approx(4500)
    assert facts.number("coverage_pct") == pytest.approx(71.4 / 72 * 100)
    assert facts.value("gap_device_hours") == 1
    assert facts.value("missing_device_hours") == 0


def test_savings_potentials_follow_their_rules() -> None:
    facts = compute_facts(known_inputs())
    # Night: (480 W - 200 W) over 15 night hours.
    assert facts.number("savings_night_base_kwh") == pytest.approx(4.2)
    assert facts.number("savings_night_base_kg") == pytest.approx(4.2 * 0.478)
    assert facts.number("savings_night_base_pct") == pytest.approx(4.2 / 66.8 * 100)
    # Bright (10:00-16:00): each hour above the meter's 0.2 kWh floor: 17 x 0.8 + 2.8.
    assert facts.number("savings_bright_lighting_kwh") == pytest.approx(16.4)


def test_device_shares_list_sub_meters_without_counting_them() -> None:
    facts = compute_facts(known_inputs())
    by_device = facts.tables["by_device"]
    assert [d["code"] for d in by_device] == ["main-1", "sub-1"]
    assert by_device[1]["kwh"] == pytest.approx(14.4)
    assert by_device[1]["counted"] is False
    assert facts.value("device_top1_name") == "Main meter"
    assert facts.number("device_top1_share_pct") == pytest.approx(100.0)


def test_market_based_scope2_subtracts_contracted_renewables() -> None:
    facts = compute_facts(known_inputs(contracted_kwh=10.0))
    assert facts.number("co2_market_kg") == pytest.approx(66.8 * 0.478 * (56.8 / 66.8))
    assert facts.number("co2_location_kg") == pytest.approx(66.8 * 0.478)


def test_correlation_and_slope_are_exact_on_a_linear_relation() -> None:
    inputs = known_inputs()
    rows = [
        HourRow(
            1,
            START + timedelta(hours=i),
            energy_kwh=0.1 * (i % 7 + 1),
            unallocated_kwh=0.0,
            coverage=1.0,
            co2_kg=0.0,
            emission_factor_id=None,
            temperature_c=float(i % 7 + 1),
        )
        for i in range(72)
    ]
    facts = compute_facts(_replace_rows(inputs, rows))
    assert facts.number("corr_temperature_r") == pytest.approx(1.0)
    assert facts.value("corr_temperature_n") == 72
    assert facts.value("corr_humidity_r") is None


def _replace_rows(inputs: FactInputs, rows: list[HourRow]) -> FactInputs:
    return replace(inputs, rows=rows, previous_rows=[])


def test_no_rows_for_the_counted_meters_is_a_permanent_error() -> None:
    with pytest.raises(NoData):
        compute_facts(_replace_rows(known_inputs(), []))


def test_facts_json_carries_value_kind_and_printed_form() -> None:
    data = facts_json(compute_facts(known_inputs()), "en")
    assert data["values"]["total_kwh"]["display"] == "66.80 kWh"
    assert data["values"]["co2_location_kg"]["display"] == "31.93 kg CO2e"
    assert data["values"]["change_pct"]["display"] == "+16.0%"


def test_grounding_accepts_placeholders_allowed_names_and_period_years() -> None:
    text = "In 2026 the site emitted {{co2_location_kg}} of CO2 under Scope 2 and GRI 305-2."
    assert find_offences(text, {"co2_location_kg"}, {2026}) == []


def test_grounding_flags_made_up_numbers_and_unknown_placeholders() -> None:
    text = "Use fell by 12% last year. Costs were {{total_cost}}. Fine {{total_kwh}}."
    offences = find_offences(text, {"total_kwh"}, {2026})
    assert [(o.reason, o.token) for o in offences] == [
        ("number", "12%"),
        ("unknown_placeholder", "{{total_cost}}"),
    ]
    assert find_offences("Twelve in 2019.", set(), {2026})[0].token == "2019."


def test_placeholders_are_filled_with_our_formatted_values() -> None:
    assert fill_placeholders("Used {{ total_kwh }}.", {"total_kwh": "1.00 kWh"}) == "Used 1.00 kWh."
