from __future__ import annotations

import statistics
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerflow_common.alert_rules import (
    MAD_TO_SIGMA,
    BaseLoadParams,
    DailyParams,
    ExpectedDay,
    InvalidRule,
    SilenceParams,
    ThresholdParams,
    advance_run,
    base_load_verdict,
    base_load_w,
    comparison_days,
    daily_verdict,
    day_type,
    knows_holidays,
    night_bounds_utc,
    parse_params,
    robust_band,
    run_verdict,
    silence_verdict,
)

T0 = datetime(2026, 11, 2, 10, tzinfo=UTC)
GAP = timedelta(seconds=60)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_parameters_are_checked_and_unknown_fields_refused() -> None:
    assert parse_params("power_above", {"threshold_w": 1000, "minutes": 5}) == ThresholdParams(
        1000.0, 5.0
    )
    assert parse_params("base_load_jump", {}) == BaseLoadParams()
    with pytest.raises(InvalidRule) as unknown:
        parse_params("power_sideways", {})
    assert unknown.value.reason == "unknown_kind"
    bad_rules: list[tuple[str, dict[str, float]]] = [
        ("silence", {"minutes": 0}),
        ("silence", {"minutes": 5, "extra": 1}),
        ("power_below", {"threshold_w": float("nan"), "minutes": 5}),
        ("power_below", {"minutes": 5}),
        ("daily_kwh_above", {"k": 100}),
        ("base_load_jump", {"min_history": 2}),
    ]
    for kind, raw in bad_rules:
        with pytest.raises(InvalidRule) as bad:
            parse_params(kind, raw)
        assert bad.value.reason == "invalid_parameter"


def test_silence_fires_once_the_last_reading_is_n_minutes_old() -> None:
    params = SilenceParams(minutes=5)
    assert not silence_verdict(at(0), at(299), params).firing
    assert silence_verdict(at(0), at(300), params).firing
    assert silence_verdict(None, at(0), params).firing  # never seen


def test_power_above_fires_after_n_minutes_of_readings_above_and_a_gap_restarts_the_run() -> None:
    # Hand example: 1,500 W every 5 s from 0 s; a 2-minute rule fires at the reading of 120 s.
    params = ThresholdParams(threshold_w=1000, minutes=2)
    run = None
    fired_at = None
    for s in range(0, 200, 5):
        run = advance_run(run, "power_above", at(s), 1500.0, 1000.0, GAP)
        if fired_at is None and run_verdict(run, "power_above", params).firing:
            fired_at = s
    assert fired_at == 120
    # A gap longer than max_gap: no evidence for it, the run starts again.
    run = advance_run(run, "power_above", at(195 + 61), 1500.0, 1000.0, GAP)
    assert run is not None and run.started_at == at(256)
    assert not run_verdict(run, "power_above", params).firing
    # A reading on the other side ends the run (the alert clears).
    assert advance_run(run, "power_above", at(260), 900.0, 1000.0, GAP) is None


def test_power_below_keeps_the_lowest_power_as_evidence() -> None:
    run = None
    for s, w in [(0, 50.0), (5, 20.0), (10, 40.0)]:
        run = advance_run(run, "power_below", at(s), w, 100.0, GAP)
    assert run is not None and run.extreme_w == 20.0 and run.samples == 3
    evidence = run_verdict(run, "power_below", ThresholdParams(100.0, 1)).evidence
    assert evidence["direction"] == "below" and evidence["extreme_w"] == 20.0


def test_robust_band_is_median_and_1_4826_mad() -> None:
    # Hand example: [10, 11, 12, 13, 100]: median 12, |x-12| = 2,1,0,1,88 -> MAD 1.
    band = robust_band([10, 11, 12, 13, 100])
    assert band.median == 12
    assert band.sigma == pytest.approx(MAD_TO_SIGMA)


def test_base_load_jump_fires_above_median_plus_k_sigma_and_not_on_too_few_nights() -> None:
    history = [100.0 + (n % 5) for n in range(28)]  # 100..104 W; median 102, MAD 1
    params = BaseLoadParams(k=3, min_change_pct=1, min_history=14)
    # limit = 102 + max(3 * 1.4826, 1.02) = 106.45 W
    assert not base_load_verdict(106.0, history, params).firing  # type: ignore[union-attr]
    verdict = base_load_verdict(107.0, history, params)
    assert verdict is not None and verdict.firing
    assert verdict.evidence["limit_w"] == pytest.approx(102 + 3 * MAD_TO_SIGMA)
    assert base_load_verdict(500.0, history[:13], params) is None


def test_a_flat_history_needs_min_change_pct_to_fire() -> None:
    flat = [200.0] * 20
    params = BaseLoadParams(k=3, min_change_pct=10, min_history=14)
    assert not base_load_verdict(219.0, flat, params).firing  # type: ignore[union-attr]
    assert base_load_verdict(221.0, flat, params).firing  # type: ignore[union-attr]


def test_a_night_with_a_missing_or_poorly_covered_hour_has_no_base_load() -> None:
    assert base_load_w([(120.0, 1.0), (90.0, 0.9), (95.0, 1.0), (130.0, 1.0)], 4) == 90.0
    assert base_load_w([(120.0, 1.0), (90.0, 0.9), (95.0, 1.0)], 4) is None
    assert base_load_w([(120.0, 1.0), (10.0, 0.5), (95.0, 1.0), (130.0, 1.0)], 4) is None


def test_the_night_window_is_01_to_05_local_time() -> None:
    start, end = night_bounds_utc(date(2026, 11, 3), "Asia/Seoul")
    assert start == datetime(2026, 11, 2, 16, tzinfo=UTC)
    assert end == datetime(2026, 11, 2, 20, tzinfo=UTC)


def test_day_types_put_weekends_and_korean_holidays_together() -> None:
    assert day_type(date(2026, 11, 2), "KR") == "workday"  # a Monday
    assert day_type(date(2026, 11, 7), "KR") == "offday"  # a Saturday
    assert day_type(date(2026, 10, 9), "KR") == "offday"  # Hangul Day, a Friday
    assert day_type(date(2026, 10, 9), "ZZ") == "workday"  # a region unknown: weekends only
    assert knows_holidays("KR") and not knows_holidays("ZZ")
    days = comparison_days(date(2026, 11, 2), "KR")
    # 20 weekdays from Oct 5; Oct 5 (the substitute for National Foundation Day, a Saturday)
    # and Oct 9 (Hangul Day) are holidays.
    assert len(days) == 18 and {date(2026, 10, 5), date(2026, 10, 9)}.isdisjoint(days)
    assert all(d.weekday() < 5 for d in days)


def test_daily_kwh_below_and_a_fitted_baseline_take_over_the_history() -> None:
    history = [50.0, 52.0, 48.0, 51.0, 49.0]  # median 50, MAD 1
    params = DailyParams(k=3, min_change_pct=10, min_history=4)
    # limit below: 50 - max(4.45, 5.0) = 45
    assert daily_verdict("daily_kwh_below", 44.9, history, params).firing  # type: ignore[union-attr]
    assert not daily_verdict("daily_kwh_below", 45.1, history, params).firing  # type: ignore[union-attr]
    assert daily_verdict("daily_kwh_above", 99.0, history[:3], params) is None
    fitted = ExpectedDay(expected_kwh=80.0, tolerance_kwh=5.0, source="baseline 1")
    verdict = daily_verdict("daily_kwh_above", 86.0, history, params, fitted)
    assert verdict is not None and verdict.firing and verdict.evidence["baseline"] == "baseline 1"


values = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@settings(deadline=None)
@given(st.lists(values, min_size=14, max_size=28), st.floats(min_value=0.5, max_value=20))
def test_a_value_at_the_median_never_fires_and_the_band_ignores_order(
    history: list[float], k: float
) -> None:
    params = BaseLoadParams(k=k, min_change_pct=0, min_history=14)
    median = statistics.median(history)
    assert not base_load_verdict(median, history, params).firing  # type: ignore[union-attr]
    assert robust_band(history) == robust_band(list(reversed(history)))


@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3600), values), min_size=1, max_size=60))
def test_a_run_never_starts_before_its_first_reading_nor_holds_a_reading_on_the_other_side(
    readings: list[tuple[int, float]],
) -> None:
    run = None
    for s, w in sorted(readings):
        run = advance_run(run, "power_above", at(s), w, 500.0, GAP)
        if run is not None:
            assert run.started_at <= run.last_at
            assert run.extreme_w > 500.0
        elif w > 500.0:
            pytest.fail("a reading above the threshold must start or extend a run")
