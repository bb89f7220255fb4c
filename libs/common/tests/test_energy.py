from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerflow_common.energy import (
    FLAG_COUNTER_NOISE,
    FLAG_COUNTER_RESET,
    FLAG_EXPORT_FROM_POWER,
    FLAG_NEGATIVE_POWER_IGNORED,
    FLAG_UNALLOCATED_ENERGY,
    HOUR,
    EnergySample,
    HourlyEnergy,
    hour_floor,
    hourly_energy,
    touched_hours,
    trapezoid_wh,
)

T10 = datetime(2024, 5, 1, 10, tzinfo=UTC)
T11 = T10 + HOUR
T12 = T11 + HOUR
S = timedelta(seconds=1)


def at(seconds: float) -> datetime:
    return T10 + timedelta(seconds=seconds)


def power(seconds: float, power_w: float) -> EnergySample:
    return EnergySample(ts=at(seconds), power_w=power_w)


def counter(seconds: float, energy_wh: float, export_wh: float | None = None) -> EnergySample:
    return EnergySample(ts=at(seconds), energy_wh=energy_wh, energy_export_wh=export_wh)


def one_hour(
    samples: list[EnergySample],
    *,
    max_gap: timedelta = timedelta(seconds=60),
    counter_reset_tolerance_wh: float = 10.0,
    bidirectional: bool = False,
) -> HourlyEnergy:
    (result,) = hourly_energy(
        samples,
        T10,
        T11,
        max_gap=max_gap,
        counter_reset_tolerance_wh=counter_reset_tolerance_wh,
        bidirectional=bidirectional,
    )
    return result


# --- power ------------------------------------------------------------------------------------


def test_one_hour_at_1150_5_w_sampled_every_5_s_is_1_1505_kwh() -> None:
    samples = [power(5 * i, 1150.5) for i in range(721)]  # 10:00:00 .. 11:00:00 inclusive
    assert len(samples) == 721

    result = one_hour(samples)

    assert result.energy_kwh == pytest.approx(1.1505, rel=1e-12)
    assert result.coverage == 1.0
    assert result.source == "power"
    assert result.samples == 720  # the 11:00:00 reading belongs to the next hour
    assert result.power_avg_w == pytest.approx(1150.5)
    assert result.export_kwh == 0.0
    assert result.unallocated_kwh == 0.0


def test_gap_longer_than_max_gap_adds_no_energy_and_lowers_coverage() -> None:
    # 10:00-10:30 sampled every 10 s, then nothing until 10:45, then every 10 s to 11:00.
    samples = [power(10 * i, 1000.0) for i in range(181)]
    samples += [power(2700 + 10 * i, 1000.0) for i in range(91)]

    result = one_hour(samples)

    assert result.energy_kwh == pytest.approx(0.75)
    assert result.coverage == pytest.approx(0.75)
    assert result.power_avg_w == pytest.approx(1000.0)


def test_gap_of_exactly_max_gap_still_counts() -> None:
    result = one_hour([power(0, 600.0), power(60, 600.0)], max_gap=timedelta(seconds=60))

    assert result.energy_kwh == pytest.approx(600.0 * 60 / 3600 / 1000)
    assert result.coverage == pytest.approx(60 / 3600)


def test_interval_across_an_hour_boundary_is_split_with_interpolated_power() -> None:
    # 0 W at 10:59:50 rising linearly to 2000 W at 11:00:10: 1000 W at the boundary.
    samples = [power(3590, 0.0), power(3610, 2000.0)]

    h10, h11 = hourly_energy(samples, T10, T12)

    assert h10.energy_kwh * 1000 == pytest.approx((0 + 1000) / 2 * 10 / 3600)
    assert h11.energy_kwh * 1000 == pytest.approx((1000 + 2000) / 2 * 10 / 3600)
    assert h10.coverage == pytest.approx(10 / 3600)
    assert h11.coverage == pytest.approx(10 / 3600)


def test_boundary_readings_outside_the_range_complete_the_first_and_last_hours() -> None:
    samples = [power(-30 + 30 * i, 360.0) for i in range(123)]  # 09:59:30 .. 11:00:30

    (result,) = hourly_energy(samples, T10, T11)

    assert result.energy_kwh == pytest.approx(0.36)
    assert result.coverage == pytest.approx(1.0)


def test_negative_power_of_a_bidirectional_device_is_export_never_negative_import() -> None:
    samples = [power(10 * i, -500.0) for i in range(361)]

    result = one_hour(samples, bidirectional=True)

    assert result.energy_kwh == 0.0
    assert result.export_kwh == pytest.approx(0.5)
    assert result.power_avg_w == pytest.approx(-500.0)
    assert result.flags == ()


def test_negative_power_of_a_one_way_device_counts_as_zero_and_is_flagged() -> None:
    samples = [power(10 * i, -500.0 if i % 2 else 500.0) for i in range(361)]

    one_way = one_hour(samples, bidirectional=False)
    two_way = one_hour(samples, bidirectional=True)

    assert one_way.export_kwh == 0.0
    assert one_way.energy_kwh == pytest.approx(two_way.energy_kwh)
    assert one_way.energy_kwh > 0
    assert FLAG_NEGATIVE_POWER_IGNORED in one_way.flags


def test_interval_crossing_zero_is_split_at_the_zero_crossing() -> None:
    # +1000 W to -3000 W over 40 s crosses zero after 10 s.
    result = one_hour([power(0, 1000.0), power(40, -3000.0)], bidirectional=True)

    assert result.energy_kwh * 1000 == pytest.approx(1000 * 10 / 2 / 3600)
    assert result.export_kwh * 1000 == pytest.approx(3000 * 30 / 2 / 3600)


def test_trapezoid_of_opposite_signs_returns_both_parts_positive() -> None:
    import_wh, export_wh = trapezoid_wh(-3000.0, 1000.0, 40.0)

    assert import_wh == pytest.approx(1000 * 10 / 2 / 3600)
    assert export_wh == pytest.approx(3000 * 30 / 2 / 3600)


def test_trapezoid_of_constant_power_is_power_times_time() -> None:
    assert trapezoid_wh(360.0, 360.0, 3600.0) == (360.0, 0.0)


def test_non_finite_values_are_treated_as_missing() -> None:
    samples = [power(0, 100.0), power(30, math.nan), power(60, 100.0)]

    result = one_hour(samples)

    assert result.energy_kwh * 1000 == pytest.approx(100 * 60 / 3600)
    assert result.power_max_w == 100.0


# --- counters ---------------------------------------------------------------------------------


def test_counter_energy_is_the_increase_between_readings() -> None:
    samples = [counter(30 * i, 1000.0 + 2.5 * i) for i in range(121)]  # 10:00 .. 11:00

    result = one_hour(samples)

    assert result.source == "counter"
    assert result.energy_kwh == pytest.approx(0.3)
    assert result.coverage == pytest.approx(1.0)
    assert result.flags == ()


def test_counter_increase_across_an_hour_boundary_is_split_in_proportion_to_time() -> None:
    samples = [counter(3570, 100.0), counter(3610, 140.0)]  # 30 s before, 10 s after 11:00

    h10, h11 = hourly_energy(samples, T10, T12)

    assert h10.energy_kwh * 1000 == pytest.approx(30.0)
    assert h11.energy_kwh * 1000 == pytest.approx(10.0)


def test_counter_drop_beyond_tolerance_is_a_reset() -> None:
    samples = [counter(0, 5000.0), counter(30, 5010.0), counter(60, 4.0), counter(90, 9.0)]

    result = one_hour(samples, counter_reset_tolerance_wh=10.0)

    # 10 Wh, then the reset interval counts its new value (4 Wh), then 5 Wh.
    assert result.energy_kwh * 1000 == pytest.approx(19.0)
    assert FLAG_COUNTER_RESET in result.flags


def test_counter_drop_within_tolerance_is_noise_and_yields_zero() -> None:
    samples = [counter(0, 1000.0), counter(30, 997.0)]

    result = one_hour(samples, counter_reset_tolerance_wh=10.0)

    assert result.energy_kwh == 0.0
    assert FLAG_COUNTER_NOISE in result.flags


def test_counter_climbing_back_after_noise_is_not_counted_twice() -> None:
    values = [1000.0, 997.0, 1000.0, 1004.0]
    samples = [counter(30 * i, v) for i, v in enumerate(values)]

    result = one_hour(samples, counter_reset_tolerance_wh=10.0)

    assert result.energy_kwh * 1000 == pytest.approx(4.0)


def test_counter_increase_across_a_long_gap_is_unallocated_in_the_hour_after_the_gap() -> None:
    samples = [counter(0, 100.0), counter(30, 110.0), counter(3700, 500.0), counter(3730, 505.0)]

    h10, h11 = hourly_energy(samples, T10, T12)

    assert h10.energy_kwh * 1000 == pytest.approx(10.0)
    assert h10.unallocated_kwh == 0.0
    assert h11.energy_kwh * 1000 == pytest.approx(5.0)
    assert h11.unallocated_kwh * 1000 == pytest.approx(390.0)
    assert FLAG_UNALLOCATED_ENERGY in h11.flags
    assert FLAG_UNALLOCATED_ENERGY not in h10.flags
    assert h10.coverage == pytest.approx(30 / 3600)


def test_counter_is_preferred_over_power_when_a_reading_carries_it() -> None:
    samples = [EnergySample(ts=at(30 * i), power_w=9999.0, energy_wh=10.0 * i) for i in range(121)]

    result = one_hour(samples)

    assert result.source == "counter"
    assert result.energy_kwh == pytest.approx(1.2)
    assert result.power_avg_w == pytest.approx(9999.0)


def test_export_counter_of_a_bidirectional_device_gives_export_kwh() -> None:
    samples = [counter(30 * i, 100.0 + i, 50.0 + 2 * i) for i in range(121)]

    two_way = one_hour(samples, bidirectional=True)
    one_way = one_hour(samples, bidirectional=False)

    assert two_way.energy_kwh * 1000 == pytest.approx(120.0)
    assert two_way.export_kwh * 1000 == pytest.approx(240.0)
    assert one_way.export_kwh == 0.0


def test_bidirectional_counter_device_without_export_counter_takes_export_from_power() -> None:
    samples = [EnergySample(ts=at(30 * i), power_w=-360.0, energy_wh=100.0) for i in range(121)]

    result = one_hour(samples, bidirectional=True)

    assert result.source == "counter"
    assert result.energy_kwh == 0.0
    assert result.export_kwh == pytest.approx(0.36)
    assert FLAG_EXPORT_FROM_POWER in result.flags


# --- sources, stats, hours -----------------------------------------------------------------


def test_hours_without_readings_have_no_source_and_zero_energy() -> None:
    samples = [power(10 * i, 100.0) for i in range(350)]  # last at 10:58:20

    h10, h11 = hourly_energy(samples, T10, T12)

    assert h10.source == "power"
    assert h11.source is None
    assert (h11.energy_kwh, h11.coverage, h11.samples) == (0.0, 0.0, 0)
    assert h11.power_avg_w is None
    assert h11.temperature_avg_c is None


def test_every_hour_of_the_range_is_returned_in_order() -> None:
    results = hourly_energy([], T10, T10 + 5 * HOUR)

    assert [r.hour_start for r in results] == [T10 + i * HOUR for i in range(5)]
    assert hourly_energy([], T10, T10) == []


def test_stats_cover_samples_inside_the_hour_only() -> None:
    samples = [
        EnergySample(ts=at(-10), power_w=5000.0, temperature_c=99.0),
        EnergySample(ts=at(0), power_w=100.0, temperature_c=20.0, humidity_pct=40.0),
        EnergySample(ts=at(10), power_w=300.0, temperature_c=22.0, brightness_lux=150.0),
        EnergySample(ts=at(40), power_w=300.0),
        EnergySample(ts=at(3600), power_w=7000.0, temperature_c=99.0),
    ]

    result = one_hour(samples)

    assert result.samples == 3
    assert (result.power_min_w, result.power_max_w) == (100.0, 300.0)
    assert result.temperature_avg_c == pytest.approx(21.0)
    assert result.humidity_avg_pct == pytest.approx(40.0)
    assert result.brightness_avg_lux == pytest.approx(150.0)
    # Time-weighted over the covered 40 s: 10 s averaging 200 W, 30 s at 300 W.
    assert result.power_avg_w == pytest.approx((200 * 10 + 300 * 30) / 40)


def test_unsorted_input_gives_the_same_result_as_sorted() -> None:
    samples = [power(10 * i, 100.0 + i) for i in range(361)]

    assert one_hour(samples[::-1]) == one_hour(samples)


def test_range_bounds_must_be_aware_and_hour_aligned() -> None:
    with pytest.raises(ValueError, match="hour boundary"):
        hourly_energy([], T10 + S, T11)
    with pytest.raises(ValueError, match="timezone-aware"):
        hourly_energy([], T10.replace(tzinfo=None), T11)
    with pytest.raises(ValueError, match="timezone-aware"):
        hourly_energy([EnergySample(ts=datetime(2024, 5, 1, 10), power_w=1.0)], T10, T11)


def test_reading_in_mid_hour_touches_only_its_own_hour() -> None:
    assert touched_hours(at(1800), timedelta(seconds=60)) == [T10]


def test_reading_near_the_start_of_its_hour_also_touches_the_previous_hour() -> None:
    assert touched_hours(at(30), timedelta(seconds=60)) == [T10 - HOUR, T10]
    assert touched_hours(T10, timedelta(seconds=60)) == [T10 - HOUR, T10]


def test_reading_near_the_end_of_its_hour_also_touches_the_next_hour() -> None:
    assert touched_hours(at(3570), timedelta(seconds=60)) == [T10, T11]


def test_touched_hours_are_utc_for_readings_in_other_zones() -> None:
    seoul = datetime(2024, 5, 1, 19, 30, tzinfo=UTC).astimezone(ZoneInfo("Asia/Seoul"))
    assert touched_hours(seoul) == [datetime(2024, 5, 1, 19, tzinfo=UTC)]
    assert hour_floor(seoul) == datetime(2024, 5, 1, 19, tzinfo=UTC)


# --- properties -------------------------------------------------------------------------------

MAX_GAP = timedelta(seconds=60)
RANGE_HOURS = 3

# Steps up to 90 s so that some intervals exceed the 60 s max_gap.
steps = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=90_000_000),  # microseconds
        st.floats(min_value=-5000, max_value=5000, allow_nan=False),
    ),
    min_size=2,
    max_size=300,
)


def _power_samples(raw: list[tuple[int, float]]) -> list[EnergySample]:
    samples: list[EnergySample] = []
    t_us = 0
    for step_us, p in raw:
        t_us += step_us
        ts = T10 + timedelta(microseconds=t_us)
        if ts > T10 + RANGE_HOURS * HOUR:
            break
        samples.append(EnergySample(ts=ts, power_w=p))
    return samples


@settings(deadline=None)
@given(steps)
def test_hourly_power_energy_adds_up_to_the_energy_of_the_whole_range(
    raw: list[tuple[int, float]],
) -> None:
    samples = _power_samples(raw)
    results = hourly_energy(
        samples, T10, T10 + RANGE_HOURS * HOUR, max_gap=MAX_GAP, bidirectional=True
    )

    net_wh = 0.0
    for a, b in pairwise(samples):
        dt_s = (b.ts - a.ts).total_seconds()
        if b.ts - a.ts <= MAX_GAP:
            assert a.power_w is not None and b.power_w is not None
            net_wh += (a.power_w + b.power_w) / 2 * dt_s / 3600
    hourly_net_wh = sum(r.energy_kwh - r.export_kwh for r in results) * 1000

    assert hourly_net_wh == pytest.approx(net_wh, rel=1e-9, abs=1e-6)
    for r in results:
        assert r.energy_kwh >= 0
        assert r.export_kwh >= 0
        assert 0.0 <= r.coverage <= 1.0


@settings(deadline=None)
@given(steps, st.integers(min_value=1, max_value=RANGE_HOURS - 1))
def test_hour_results_do_not_depend_on_the_requested_window(
    raw: list[tuple[int, float]], split_hours: int
) -> None:
    samples = _power_samples(raw)
    end = T10 + RANGE_HOURS * HOUR
    mid = T10 + split_hours * HOUR

    whole = hourly_energy(samples, T10, end, max_gap=MAX_GAP, bidirectional=True)
    parts = hourly_energy(samples, T10, mid, max_gap=MAX_GAP, bidirectional=True)
    parts += hourly_energy(samples, mid, end, max_gap=MAX_GAP, bidirectional=True)

    assert whole == parts


counter_steps = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=120),  # seconds, some beyond max_gap
        st.floats(min_value=0, max_value=50, allow_nan=False),  # Wh added
    ),
    min_size=1,
    max_size=200,
)


@settings(deadline=None)
@given(st.floats(min_value=0, max_value=1e6, allow_nan=False), counter_steps)
def test_monotonic_counter_energy_over_hours_equals_its_total_increase(
    first_wh: float, raw: list[tuple[int, float]]
) -> None:
    samples = [EnergySample(ts=T10, energy_wh=first_wh)]
    t_s, value = 0, first_wh
    for step_s, added in raw:
        t_s += step_s
        if t_s >= RANGE_HOURS * 3600:
            break
        value += added
        samples.append(EnergySample(ts=at(t_s), energy_wh=value))

    results = hourly_energy(samples, T10, T10 + RANGE_HOURS * HOUR, max_gap=MAX_GAP)

    total_wh = sum(r.energy_kwh + r.unallocated_kwh for r in results) * 1000
    assert samples[-1].energy_wh is not None
    assert total_wh == pytest.approx(samples[-1].energy_wh - first_wh, rel=1e-9, abs=1e-6)


@settings(deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=120),
            st.floats(min_value=0, max_value=1e5, allow_nan=False),
        ),
        min_size=2,
        max_size=200,
    ),
    st.floats(min_value=0, max_value=100, allow_nan=False),
)
def test_any_counter_sequence_yields_non_negative_energy(
    raw: list[tuple[int, float]], tolerance_wh: float
) -> None:
    samples: list[EnergySample] = []
    t_s = 0
    for step_s, value in raw:
        t_s += step_s
        samples.append(EnergySample(ts=at(t_s), energy_wh=value, energy_export_wh=value / 2))

    results = hourly_energy(
        samples,
        T10,
        T10 + RANGE_HOURS * HOUR,
        max_gap=MAX_GAP,
        counter_reset_tolerance_wh=tolerance_wh,
        bidirectional=True,
    )

    for r in results:
        assert r.energy_kwh >= 0
        assert r.export_kwh >= 0
        assert r.unallocated_kwh >= 0
        assert r.unallocated_export_kwh >= 0
        assert 0.0 <= r.coverage <= 1.0
