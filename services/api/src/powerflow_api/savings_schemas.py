"""Wire types of baselines, savings and outdoor series (controllers/baselines.py)."""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Annotated, Literal

from msgspec import Meta, Struct

from powerflow_common.baselines import (
    G14_HOURLY_CV_RMSE_PCT,
    G14_HOURLY_NMBE_PCT,
    G14_MONTHLY_CV_RMSE_PCT,
    G14_MONTHLY_NMBE_PCT,
    MODEL_KINDS,
    ModelKind,
)
from powerflow_common.savings import SiteSavings, StoredBaseline

TemperatureSourceName = Literal["device", "weather"]

__all__ = ["MODEL_KINDS"]


def finite(value: float | None) -> float | None:
    """JSON has no infinity: a figure that does not exist (savings of 0 kWh) is null."""
    return value if value is not None and math.isfinite(value) else None


class BaselineFit(Struct, forbid_unknown_fields=True):
    """Fit a baseline on the site's local days ``start`` .. ``end`` (inclusive)."""

    start: date
    end: date
    temperature_source: TemperatureSourceName | None = None  # default: the one with more days
    # Default: all five.
    kinds: Annotated[list[ModelKind], Meta(min_length=1, max_length=5)] | None = None


class CoefficientOut(Struct):
    name: str
    value: float
    std_error: float
    t_stat: float | None


class Limit(Struct):
    cv_rmse_max_pct: float
    nmbe_max_abs_pct: float
    basis: str


class Limits(Struct):
    daily: Limit
    monthly: Limit


LIMITS = Limits(
    daily=Limit(
        G14_HOURLY_CV_RMSE_PCT,
        G14_HOURLY_NMBE_PCT,
        "Guideline 14's hourly limits, applied to the daily residuals",
    ),
    monthly=Limit(
        G14_MONTHLY_CV_RMSE_PCT,
        G14_MONTHLY_NMBE_PCT,
        "Guideline 14's monthly limits, applied to the predictions summed by calendar month",
    ),
)


class FitStatsOut(Struct):
    n_days: int
    n_params: int
    mean_kwh: float
    rmse_kwh: float
    cv_rmse_pct: float | None
    nmbe_pct: float | None
    r_squared: float
    autocorrelation_lag1: float
    monthly_n: int
    monthly_cv_rmse_pct: float | None
    monthly_nmbe_pct: float | None
    meets_daily_limits: bool
    meets_monthly_limits: bool | None
    meets_guideline_14: bool


class FitDay(Struct):
    day: date
    temperature_c: float
    actual_kwh: float
    predicted_kwh: float


class Baseline(Struct):
    id: int
    site_id: int
    period_start: date
    period_end: date
    temperature_source: TemperatureSourceName
    model_kind: ModelKind
    intercept_kwh: float
    heating_slope_kwh_per_c: float
    cooling_slope_kwh_per_c: float
    heating_change_point_c: float | None
    cooling_change_point_c: float | None
    coefficients: list[CoefficientOut]
    stats: FitStatsOut
    limits: Limits
    temperature_min_c: float
    temperature_max_c: float
    sufficiency: str
    fitted_at: datetime
    fitted_by: str | None
    fit_days: list[FitDay] | None = None  # GET /baselines/{id}: the baseline days


def to_baseline(stored: StoredBaseline, fit_days: list[FitDay] | None = None) -> Baseline:
    m, s = stored.model, stored.model.stats
    return Baseline(
        id=stored.id,
        site_id=stored.site_id,
        period_start=stored.period.first,
        period_end=stored.period.last,
        temperature_source=stored.temperature_source,
        model_kind=m.kind,
        intercept_kwh=m.intercept_kwh,
        heating_slope_kwh_per_c=m.heating_slope_kwh_per_c,
        cooling_slope_kwh_per_c=m.cooling_slope_kwh_per_c,
        heating_change_point_c=m.heating_change_point_c,
        cooling_change_point_c=m.cooling_change_point_c,
        coefficients=[
            CoefficientOut(c.name, c.value, c.std_error, finite(c.t_stat)) for c in m.coefficients
        ],
        stats=FitStatsOut(
            n_days=s.n_days,
            n_params=s.n_params,
            mean_kwh=s.mean_kwh,
            rmse_kwh=s.rmse_kwh,
            cv_rmse_pct=finite(s.cv_rmse_pct),
            nmbe_pct=finite(s.nmbe_pct),
            r_squared=s.r_squared,
            autocorrelation_lag1=s.autocorrelation_lag1,
            monthly_n=s.monthly_n,
            monthly_cv_rmse_pct=finite(s.monthly_cv_rmse_pct),
            monthly_nmbe_pct=finite(s.monthly_nmbe_pct),
            meets_daily_limits=s.meets_daily_limits,
            meets_monthly_limits=s.meets_monthly_limits,
            meets_guideline_14=s.meets_guideline_14,
        ),
        limits=LIMITS,
        temperature_min_c=m.temperature_min_c,
        temperature_max_c=m.temperature_max_c,
        sufficiency=m.sufficiency,
        fitted_at=stored.fitted_at,
        fitted_by=stored.fitted_by,
        fit_days=fit_days,
    )


class SavingsDayOut(Struct):
    day: date
    temperature_c: float
    actual_kwh: float
    predicted_kwh: float
    savings_kwh: float
    cusum_kwh: float
    extrapolated: bool


class SavingsOut(Struct):
    """Savings = baseline prediction - actual, with the Guideline 14 Annex B uncertainty."""

    site_id: int
    baseline_id: int
    model_kind: ModelKind
    temperature_source: TemperatureSourceName
    start: date
    end: date
    confidence: float
    baseline_kwh: float
    actual_kwh: float
    savings_kwh: float
    savings_pct: float | None
    uncertainty_kwh: float | None
    uncertainty_pct: float | None
    fractional_uncertainty_pct: float | None
    fractional_uncertainty_68_pct: float | None
    meets_guideline_14_uncertainty: bool
    n_baseline: int
    n_effective: float
    m_reporting: int
    t_value: float
    extrapolated_days: int
    days_missing: int
    overlaps_baseline: bool
    days: list[SavingsDayOut]


def to_savings(site_id: int, found: SiteSavings) -> SavingsOut:
    s = found.savings
    return SavingsOut(
        site_id=site_id,
        baseline_id=found.baseline.id,
        model_kind=found.baseline.model.kind,
        temperature_source=found.baseline.temperature_source,
        start=found.period.first,
        end=found.period.last,
        confidence=s.confidence,
        baseline_kwh=s.baseline_kwh,
        actual_kwh=s.actual_kwh,
        savings_kwh=s.savings_kwh,
        savings_pct=finite(s.savings_pct),
        uncertainty_kwh=finite(s.uncertainty_kwh),
        uncertainty_pct=finite(s.uncertainty_pct),
        fractional_uncertainty_pct=finite(100 * s.fractional_uncertainty),
        fractional_uncertainty_68_pct=finite(100 * s.fractional_uncertainty_68),
        meets_guideline_14_uncertainty=s.meets_guideline_14_uncertainty,
        n_baseline=s.n_baseline,
        n_effective=s.n_effective,
        m_reporting=s.m_reporting,
        t_value=s.t_value,
        extrapolated_days=s.extrapolated_days,
        days_missing=found.days_missing,
        overlaps_baseline=found.overlaps_baseline,
        days=[
            SavingsDayOut(
                d.day,
                d.temperature_c,
                d.actual_kwh,
                d.predicted_kwh,
                d.savings_kwh,
                d.cusum_kwh,
                d.extrapolated,
            )
            for d in s.days
        ],
    )


class OutdoorMark(Struct, forbid_unknown_fields=True):
    outdoor: bool


class OutdoorMarked(Struct):
    code: str
    outdoor: bool
    changed: bool


class OutdoorSeries(Struct):
    """What a site's outdoor temperature can come from."""

    site_id: int
    devices: list[str]  # marked outdoor and on the site now
    weather_days: int
    weather_first: date | None
    weather_last: date | None
    weather_sources: list[str]


class WeatherImported(Struct):
    site_id: int
    station: str
    imported_days: int
    first: date | None
    last: date | None
