"""Baselines (ASHRAE Guideline 14 change-point models) and savings with their uncertainty."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pf_hypothesis import examples

from powerflow_common.baselines import (
    BaselineModel,
    BaselineRefused,
    DailyPoint,
    check_sufficiency,
    compute_savings,
    fit_baseline,
    fractional_savings_uncertainty,
)

MIN_DAYS, MIN_SPAN_C, MIN_SHARE = 90, 10.0, 0.8
NOISE_KWH = 12.0


def seoul_year(start: date, days: int, seed: int) -> list[tuple[date, float]]:
    """A year of daily mean outdoor temperatures shaped like Seoul's (-5 °C .. 28 °C)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(days):
        d = start + timedelta(days=i)
        season = -math.cos(2 * math.pi * (d.timetuple().tm_yday - 15) / 365.25)
        out.append((d, float(11.5 + 16.5 * season + rng.normal(0, 2.5))))
    return out


def load_5p(t: float) -> float:
    """The synthetic site: 300 kWh base, 9 kWh/°C below 14 °C, 12 kWh/°C above 22 °C."""
    return 300.0 + 9.0 * max(14.0 - t, 0.0) + 12.0 * max(t - 22.0, 0.0)


def load_3p_heating(t: float) -> float:
    return 250.0 + 7.5 * max(16.0 - t, 0.0)


def site_days(
    law: object, start: date, days: int, seed: int, factor: float = 1.0
) -> list[DailyPoint]:
    rng = np.random.default_rng(seed + 1000)
    assert callable(law)
    return [
        DailyPoint(d, t, factor * float(law(t)) + float(rng.normal(0, NOISE_KWH)))
        for d, t in seoul_year(start, days, seed)
    ]


def fit(points: list[DailyPoint]) -> BaselineModel:
    return fit_baseline(
        points, len(points), min_days=MIN_DAYS, min_span_c=MIN_SPAN_C, min_share=MIN_SHARE
    )


def coefficient(model: BaselineModel, name: str) -> tuple[float, float]:
    (c,) = [c for c in model.coefficients if c.name == name]
    return c.value, c.std_error


def test_5p_site_recovers_its_coefficients_within_their_stated_uncertainty() -> None:
    model = fit(site_days(load_5p, date(2024, 1, 1), 366, seed=7))
    assert model.kind == "5p"
    for name, truth in (
        ("intercept_kwh", 300.0),
        ("heating_slope_kwh_per_c", 9.0),
        ("cooling_slope_kwh_per_c", 12.0),
    ):
        value, se = coefficient(model, name)
        assert abs(value - truth) <= 3 * se, (name, value, se)
        assert se < 0.1 * truth  # and the uncertainty itself is informative
    assert model.heating_change_point_c == pytest.approx(14.0, abs=1.0)
    assert model.cooling_change_point_c == pytest.approx(22.0, abs=1.0)
    # CV(RMSE) is the noise over the mean daily kWh (n - p in the denominator).
    expected_cv = 100 * NOISE_KWH / model.stats.mean_kwh
    assert model.stats.cv_rmse_pct == pytest.approx(expected_cv, rel=0.1)
    assert abs(model.stats.nmbe_pct) < 1e-9  # OLS with an intercept: residuals sum to 0
    assert model.stats.meets_daily_limits and model.stats.meets_monthly_limits
    assert model.stats.meets_guideline_14
    assert model.sufficiency.startswith("full year")


def test_heating_only_site_is_a_3p_heating_model_not_a_cooling_one() -> None:
    model = fit(site_days(load_3p_heating, date(2024, 1, 1), 366, seed=3))
    assert model.kind == "3p_heating"
    value, se = coefficient(model, "heating_slope_kwh_per_c")
    assert abs(value - 7.5) <= 3 * se
    assert model.heating_change_point_c == pytest.approx(16.0, abs=1.0)
    assert model.cooling_slope_kwh_per_c == 0.0


def test_flat_site_is_the_mean_model() -> None:
    model = fit(site_days(lambda t: 400.0, date(2024, 1, 1), 366, seed=5))
    assert model.kind == "mean"
    assert model.intercept_kwh == pytest.approx(400.0, abs=3 * NOISE_KWH / math.sqrt(366))


def test_a_known_10_pct_reduction_is_reported_as_10_pct_within_its_uncertainty() -> None:
    baseline = fit(site_days(load_5p, date(2024, 1, 1), 366, seed=11))
    reporting = site_days(load_5p, date(2025, 1, 1), 365, seed=12, factor=0.9)
    savings = compute_savings(baseline, reporting, confidence=0.9)
    low = savings.savings_pct - savings.uncertainty_pct
    high = savings.savings_pct + savings.uncertainty_pct
    assert low <= 10.0 <= high, (savings.savings_pct, savings.uncertainty_pct)
    assert 0 < savings.uncertainty_pct < 2.0  # a year of days pins 10 % down well
    assert savings.days[-1].cusum_kwh == pytest.approx(savings.savings_kwh)
    assert savings.meets_guideline_14_uncertainty
    assert savings.m_reporting == 365 and savings.n_baseline == 366


def test_fractional_savings_uncertainty_by_hand() -> None:
    # t 1, CV 10 %, n = n' = 365 (no autocorrelation), m 365, F 10 %:
    # 1.26 x 0.1 x sqrt(1 x (1 + 2/365) / 365) / 0.1 = 1.26 x 0.0524856 = 0.0661319
    fsu = fractional_savings_uncertainty(
        cv_rmse=0.1, n=365, n_effective=365, m=365, savings_fraction=0.1, t_value=1.0
    )
    assert fsu == pytest.approx(0.0661319, rel=1e-5)
    # Autocorrelated days count as fewer: rho 0.5 makes n' = n/3 and widens the band.
    wider = fractional_savings_uncertainty(
        cv_rmse=0.1, n=365, n_effective=365 / 3, m=365, savings_fraction=0.1, t_value=1.0
    )
    assert wider > 1.7 * fsu


def test_autocorrelated_residuals_widen_the_savings_band() -> None:
    points = site_days(load_5p, date(2024, 1, 1), 366, seed=21)
    rng = np.random.default_rng(0)
    drift = np.cumsum(rng.normal(0, 4, len(points)))  # slow drift: neighbouring days agree
    drifting = [
        DailyPoint(p.day, p.temperature_c, p.energy_kwh + float(d - drift.mean()))
        for p, d in zip(points, drift, strict=True)
    ]
    model = fit(drifting)
    assert model.stats.autocorrelation_lag1 > 0.5
    savings = compute_savings(model, drifting[:60], confidence=0.9)
    assert savings.n_effective < savings.n_baseline / 3


def test_too_few_days_are_refused_with_the_rule() -> None:
    points = site_days(load_5p, date(2024, 1, 1), 30, seed=1)
    with pytest.raises(BaselineRefused) as refused:
        fit(points)
    assert refused.value.reason == "insufficient_data"
    assert "full year" in refused.value.detail


def test_a_period_mostly_missing_is_refused() -> None:
    points = site_days(load_5p, date(2024, 1, 1), 200, seed=1)
    with pytest.raises(BaselineRefused) as refused:
        check_sufficiency(
            points, 366, min_days=MIN_DAYS, min_span_c=MIN_SPAN_C, min_share=MIN_SHARE
        )
    assert refused.value.reason == "too_many_missing_days"


def test_a_short_baseline_over_a_wide_temperature_range_is_sufficient() -> None:
    points = site_days(load_5p, date(2024, 6, 1), 120, seed=1)
    rule = check_sufficiency(
        points, 120, min_days=MIN_DAYS, min_span_c=MIN_SPAN_C, min_share=MIN_SHARE
    )
    assert "120 usable days" in rule


def test_reporting_days_outside_the_baseline_range_are_flagged() -> None:
    model = fit(site_days(load_5p, date(2024, 1, 1), 366, seed=2))
    hot = [DailyPoint(date(2025, 8, 1), model.temperature_max_c + 5, 500.0)]
    assert compute_savings(model, hot, confidence=0.9).extrapolated_days == 1


# Each example fits five models over a year of days: a quarter of the profile's count.
@settings(max_examples=examples(1 / 4), deadline=None)
@given(
    base=st.floats(50, 2000),
    slope=st.floats(0, 30),
    noise=st.floats(0.5, 40),
    seed=st.integers(0, 2**16),
)
def test_savings_against_the_baseline_days_themselves_are_zero(
    base: float, slope: float, noise: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    points = [
        DailyPoint(d, t, base + slope * max(15 - t, 0) + float(rng.normal(0, noise)))
        for d, t in seoul_year(date(2024, 1, 1), 366, seed)
    ]
    model = fit(points)
    savings = compute_savings(model, points, confidence=0.9)
    assert savings.savings_kwh == pytest.approx(0.0, abs=1e-6 * savings.baseline_kwh)
    assert savings.uncertainty_kwh >= 0
    assert all(s.predicted_kwh >= 0 or model.intercept_kwh < 0 for s in savings.days)


def test_a_site_that_used_nothing_is_refused_as_zero_consumption() -> None:
    # A year of 0 kWh days: the monthly CV(RMSE) divides by the monthly mean, 0.
    points = [DailyPoint(d, t, 0.0) for d, t in seoul_year(date(2024, 1, 1), 366, seed=1)]
    with pytest.raises(BaselineRefused) as refused:
        fit(points)
    assert refused.value.reason == "zero_consumption"
