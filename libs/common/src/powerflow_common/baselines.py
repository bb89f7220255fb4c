"""Baselines and verified savings, IPMVP option C style (pure: numpy, no I/O, no settings).

A site's daily kWh is modelled on the day's mean *outdoor* temperature with the change-point
models of ASHRAE Guideline 14-2014 (one formula, some terms fixed at zero)::

    kWh = b0 + bh * max(Th - T, 0) + bc * max(T - Tc, 0)

- ``mean`` (1 parameter): bh = bc = 0;
- ``3p_heating`` (3): bc = 0, bh > 0, Th fitted; ``3p_cooling`` (3): bh = 0, bc > 0, Tc fitted;
- ``4p`` (4): one change point Th = Tc, a slope on each side (at least one positive);
- ``5p`` (5): Th < Tc, bh > 0 and bc > 0 (a dead band between heating and cooling).

Change points are found by search (a 0.5 °C grid between the 10th and 90th percentile of
the temperatures, then 0.1 °C around the best), the slopes and intercept by ordinary least
squares at each candidate (numpy). Change points count as parameters (p) as in Guideline 14.

**Which model.** A model qualifies when its slopes have the physical sign above and each
slope's t statistic is at least 2 (Guideline 14 / the Inverse Modeling Toolkit's shape and
significance tests); among those the lowest CV(RMSE) wins (it divides by n - p, so a
parameter must earn its place); the mean model always qualifies.

**How a daily model is judged.** Guideline 14's calibration limits are for monthly
(CV(RMSE) <= 15 %, NMBE within +-5 %) and hourly models (<= 30 %, +-10 %). A daily model is
judged on both sides: its daily residuals against the hourly limits (days are finer than
months: the limits of the next finer resolution apply), and its predictions summed by
calendar month against the monthly limits, when the baseline holds enough whole months
(more than p). Both must pass for ``meets_guideline_14``.

**Indoor temperature is no independent variable.** The HVAC holds it: fitting kWh on it
would fit the controller, so nothing here accepts a series unless the caller says it is
outdoor (``OutdoorSeriesMissing`` otherwise).

**Savings** = baseline prediction - actual, per day and cumulated (CUSUM), with the
fractional savings uncertainty of ASHRAE Guideline 14-2014 Annex B (Reddy & Claridge 2000)::

    dE/E = t * 1.26 * CV * sqrt((n / n') * (1 + 2 / n') * (1 / m)) / F
    n' = n * (1 - rho) / (1 + rho)

with n baseline days, m reporting days, rho the lag-1 autocorrelation of the baseline
residuals (days are autocorrelated: n' < n widens the band), CV the baseline CV(RMSE),
F = savings / baseline prediction, t Student's at the confidence level with n - p degrees
of freedom. So the absolute band is ``t * 1.26 * CV * sqrt(...) * E_baseline``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import stats as scipy_stats

from powerflow_common.errors import InvalidInput

__all__ = [
    "G14_HOURLY_CV_RMSE_PCT",
    "G14_HOURLY_NMBE_PCT",
    "G14_MONTHLY_CV_RMSE_PCT",
    "G14_MONTHLY_NMBE_PCT",
    "MODEL_KINDS",
    "BaselineModel",
    "BaselineRefused",
    "Coefficient",
    "DailyPoint",
    "FitStats",
    "ModelKind",
    "OutdoorSeriesMissing",
    "Savings",
    "SavingsDay",
    "check_sufficiency",
    "compute_savings",
    "fit_baseline",
    "fractional_savings_uncertainty",
]

ModelKind = Literal["mean", "3p_heating", "3p_cooling", "4p", "5p"]
MODEL_KINDS: tuple[ModelKind, ...] = ("mean", "3p_heating", "3p_cooling", "4p", "5p")
_PARAMS: dict[ModelKind, int] = {"mean": 1, "3p_heating": 3, "3p_cooling": 3, "4p": 4, "5p": 5}

# ASHRAE Guideline 14-2014, section 4.3.2.4 (calibration of the baseline model), in percent.
G14_MONTHLY_CV_RMSE_PCT = 15.0
G14_MONTHLY_NMBE_PCT = 5.0
G14_HOURLY_CV_RMSE_PCT = 30.0
G14_HOURLY_NMBE_PCT = 10.0
# Guideline 14's recommended savings uncertainty: below 50 % of the savings at 68 %.
G14_MAX_FSU_AT_68_PCT = 50.0
# The empirical factor of the Annex B savings uncertainty formula.
_G14_FSU_FACTOR = 1.26
MIN_T_STAT = 2.0
COARSE_STEP_C = 0.5
FINE_STEP_C = 0.1
# A month counts in the monthly check when this many of its days are in the baseline.
MIN_DAYS_PER_MONTH = 20
# A full operating cycle (IPMVP): a year of days, or this many with this temperature span.
FULL_YEAR_DAYS = 365


class BaselineRefused(InvalidInput, ValueError):
    """A baseline that cannot be fitted, or savings that cannot be computed, and why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason  # machine-readable
        self.detail = detail  # what a person does about it


class OutdoorSeriesMissing(BaselineRefused):
    """No outdoor temperature: indoor temperature follows the HVAC and explains nothing."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "no_outdoor_series",
            detail
            or "The site has no outdoor temperature series. Indoor temperature follows the "
            "HVAC (it is what the system controls), so it is no independent variable: mark "
            "an outdoor device or import a weather CSV for the site, then fit again.",
        )


@dataclass(frozen=True, slots=True)
class DailyPoint:
    """One whole local day: its energy and its mean outdoor temperature."""

    day: date
    temperature_c: float
    energy_kwh: float


@dataclass(frozen=True, slots=True)
class Coefficient:
    name: str  # intercept_kwh, heating_slope_kwh_per_c, cooling_slope_kwh_per_c
    value: float
    std_error: float  # conditional on the change points found
    t_stat: float | None


@dataclass(frozen=True, slots=True)
class FitStats:
    n_days: int
    n_params: int
    mean_kwh: float
    rmse_kwh: float
    cv_rmse_pct: float
    nmbe_pct: float
    r_squared: float
    autocorrelation_lag1: float
    monthly_n: int  # whole months in the monthly check (0: not evaluable)
    monthly_cv_rmse_pct: float | None
    monthly_nmbe_pct: float | None
    meets_daily_limits: bool  # against the hourly limits
    meets_monthly_limits: bool | None  # None: too few whole months to say
    meets_guideline_14: bool


@dataclass(frozen=True, slots=True)
class BaselineModel:
    """A fitted daily model: what a stored baseline cites."""

    kind: ModelKind
    intercept_kwh: float
    heating_slope_kwh_per_c: float
    cooling_slope_kwh_per_c: float
    heating_change_point_c: float | None
    cooling_change_point_c: float | None
    coefficients: tuple[Coefficient, ...]
    stats: FitStats
    temperature_min_c: float
    temperature_max_c: float
    sufficiency: str  # which data sufficiency rule the baseline met

    def predict(self, temperature_c: NDArray[np.float64]) -> NDArray[np.float64]:
        t = np.asarray(temperature_c, dtype=np.float64)
        out = np.full_like(t, self.intercept_kwh)
        if self.heating_change_point_c is not None:
            out += self.heating_slope_kwh_per_c * np.maximum(self.heating_change_point_c - t, 0)
        if self.cooling_change_point_c is not None:
            out += self.cooling_slope_kwh_per_c * np.maximum(t - self.cooling_change_point_c, 0)
        return out


@dataclass(frozen=True, slots=True)
class _Candidate:
    kind: ModelKind
    th: float | None
    tc: float | None
    beta: NDArray[np.float64]  # intercept, then the slopes present
    se: NDArray[np.float64]
    residuals: NDArray[np.float64]
    sse: float


def _design(t: NDArray[np.float64], th: float | None, tc: float | None) -> NDArray[np.float64]:
    cols = [np.ones_like(t)]
    if th is not None:
        cols.append(np.maximum(th - t, 0.0))
    if tc is not None:
        cols.append(np.maximum(t - tc, 0.0))
    return np.column_stack(cols)


def _ols(
    t: NDArray[np.float64], y: NDArray[np.float64], th: float | None, tc: float | None, p: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], float] | None:
    x = _design(t, th, tc)
    if np.linalg.matrix_rank(x) < x.shape[1]:
        return None  # a change point outside the data: a slope column of zeros
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    residuals = y - x @ beta
    sse = float(residuals @ residuals)
    dof = max(len(y) - p, 1)
    cov = (sse / dof) * np.linalg.inv(x.T @ x)
    se = np.sqrt(np.maximum(np.diag(cov), 0.0)).astype(np.float64)
    return beta.astype(np.float64), se, residuals, sse


def _grid(t: NDArray[np.float64], step: float) -> NDArray[np.float64]:
    lo, hi = np.percentile(t, [10, 90])
    lo, hi = math.floor(lo / step) * step, math.ceil(hi / step) * step
    return np.round(np.arange(lo, hi + step / 2, step), 6).astype(np.float64)


_BATCH = 256  # candidate change points solved at once (memory: batch x days x 3 floats)

Pair = tuple[float | None, float | None]


def _sse_of(
    t: NDArray[np.float64], y: NDArray[np.float64], pairs: list[Pair]
) -> NDArray[np.float64]:
    """The least-squares SSE at each candidate (all of one kind), solved in batches.

    At the solution SSE = y'y - beta'X'y; pinv keeps a singular candidate (a hinge column of
    zeros) finite instead of failing the batch.
    """
    out = np.empty(len(pairs))
    yy = float(y @ y)
    for lo in range(0, len(pairs), _BATCH):
        chunk = pairs[lo : lo + _BATCH]
        cols = [np.ones((len(chunk), len(t)))]
        if chunk[0][0] is not None:
            th = np.array([h for h, _ in chunk], dtype=np.float64)
            cols.append(np.maximum(th[:, None] - t[None, :], 0.0))
        if chunk[0][1] is not None:
            tc = np.array([c for _, c in chunk], dtype=np.float64)
            cols.append(np.maximum(t[None, :] - tc[:, None], 0.0))
        x = np.stack(cols, axis=2)
        xtx = np.einsum("knp,knq->kpq", x, x)
        xty = np.einsum("knp,n->kp", x, y)
        beta = np.einsum("kpq,kq->kp", np.linalg.pinv(xtx), xty)
        out[lo : lo + len(chunk)] = yy - np.einsum("kp,kp->k", beta, xty)
    return out


def _pairs_for(
    kind: ModelKind, grid_h: NDArray[np.float64], grid_c: NDArray[np.float64]
) -> list[Pair]:
    """The (heating, cooling) change-point pairs a model kind tries on these grids."""
    if kind == "mean":
        return [(None, None)]
    if kind == "3p_heating":
        return [(float(h), None) for h in grid_h]
    if kind == "3p_cooling":
        return [(None, float(c)) for c in grid_c]
    if kind == "4p":
        return [(float(h), float(h)) for h in grid_h]
    return [(float(h), float(c)) for h in grid_h for c in grid_c if h < c]


def _best_of(
    t: NDArray[np.float64], y: NDArray[np.float64], pairs: list[Pair]
) -> tuple[Pair, float] | None:
    """The pair of least SSE and its SSE; None when there is no pair to try."""
    if not pairs:
        return None
    sse = _sse_of(t, y, pairs)
    i = int(np.argmin(sse))
    return pairs[i], float(sse[i])


def _around(x: float | None) -> NDArray[np.float64]:
    """The fine grid one coarse step either side of a change point."""
    if x is None:
        return np.array([0.0])
    return np.round(np.arange(x - COARSE_STEP_C, x + COARSE_STEP_C + 1e-9, FINE_STEP_C), 6)


def _search(kind: ModelKind, t: NDArray[np.float64], y: NDArray[np.float64]) -> _Candidate | None:
    """The change points of least SSE (a coarse grid, then a fine one around the best)."""
    coarse = _grid(t, COARSE_STEP_C)
    found = _best_of(t, y, _pairs_for(kind, coarse, coarse))
    if found is None:
        return None
    (th, tc), sse = found
    if kind != "mean":
        fine = _best_of(t, y, _pairs_for(kind, _around(th), _around(tc)))
        if fine is not None and fine[1] <= sse:
            th, tc = fine[0]
    done = _ols(t, y, th, tc, _PARAMS[kind])
    if done is None:
        return None
    beta, se, residuals, sse_final = done
    return _Candidate(kind, th, tc, beta, se, residuals, sse_final)


def _qualifies(c: _Candidate) -> bool:
    """Physical signs and |t| >= 2 on every slope (the mean model always qualifies)."""
    slopes = c.beta[1:]
    ses = c.se[1:]
    if any(se <= 0 or abs(b / se) < MIN_T_STAT for b, se in zip(slopes, ses, strict=True)):
        return False
    if c.kind in ("3p_heating", "3p_cooling", "5p"):
        return bool(np.all(slopes > 0))
    if c.kind == "4p":
        return bool(np.any(slopes > 0))
    return True


def _lag1(residuals: NDArray[np.float64]) -> float:
    if len(residuals) < 3:
        return 0.0
    r = residuals - residuals.mean()
    denominator = float(r @ r)
    return 0.0 if denominator == 0 else float(r[:-1] @ r[1:]) / denominator


def _stats(
    kind: ModelKind,
    days: Sequence[date],
    y: NDArray[np.float64],
    predicted: NDArray[np.float64],
) -> FitStats:
    n, p = len(y), _PARAMS[kind]
    mean = float(y.mean())
    residuals = y - predicted
    sse = float(residuals @ residuals)
    dof = max(n - p, 1)
    cv = 100.0 * math.sqrt(sse / dof) / mean if mean else math.inf
    nmbe = 100.0 * float(residuals.sum()) / (dof * mean) if mean else math.inf
    sst = float(((y - mean) ** 2).sum())
    months: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, d in enumerate(days):
        months[(d.year, d.month)].append(i)
    whole = [ix for ix in months.values() if len(ix) >= MIN_DAYS_PER_MONTH]
    monthly_cv = monthly_nmbe = None
    meets_monthly: bool | None = None
    if len(whole) > p:
        actual = np.array([y[ix].sum() for ix in whole])
        model = np.array([predicted[ix].sum() for ix in whole])
        m_res = actual - model
        m_dof, m_mean = len(whole) - p, float(actual.mean())
        # Guarded as the daily CV is: whole months of 0 kWh in a baseline that is not all 0.
        monthly_cv = (
            100.0 * math.sqrt(float(m_res @ m_res) / m_dof) / m_mean if m_mean else math.inf
        )
        monthly_nmbe = 100.0 * float(m_res.sum()) / (m_dof * m_mean) if m_mean else math.inf
        meets_monthly = (
            monthly_cv <= G14_MONTHLY_CV_RMSE_PCT and abs(monthly_nmbe) <= G14_MONTHLY_NMBE_PCT
        )
    meets_daily = cv <= G14_HOURLY_CV_RMSE_PCT and abs(nmbe) <= G14_HOURLY_NMBE_PCT
    return FitStats(
        n_days=n,
        n_params=p,
        mean_kwh=mean,
        rmse_kwh=math.sqrt(sse / dof),
        cv_rmse_pct=cv,
        nmbe_pct=nmbe,
        r_squared=1.0 - sse / sst if sst > 0 else 0.0,
        autocorrelation_lag1=_lag1(residuals),
        monthly_n=len(whole) if meets_monthly is not None else 0,
        monthly_cv_rmse_pct=monthly_cv,
        monthly_nmbe_pct=monthly_nmbe,
        meets_daily_limits=meets_daily,
        meets_monthly_limits=meets_monthly,
        meets_guideline_14=meets_daily and meets_monthly is not False,
    )


def _model(
    c: _Candidate, points: Sequence[DailyPoint], t: NDArray[np.float64], sufficiency: str
) -> BaselineModel:
    values = [float(v) for v in c.beta]
    names = ["intercept_kwh"]
    if c.th is not None:
        names.append("heating_slope_kwh_per_c")
    if c.tc is not None:
        names.append("cooling_slope_kwh_per_c")
    slopes = dict(zip(names, values, strict=True))
    coefficients = tuple(
        Coefficient(name, v, float(se), v / float(se) if se > 0 else None)
        for name, v, se in zip(names, values, c.se, strict=True)
    )
    y = np.array([p.energy_kwh for p in points], dtype=np.float64)
    return BaselineModel(
        kind=c.kind,
        intercept_kwh=values[0],
        heating_slope_kwh_per_c=slopes.get("heating_slope_kwh_per_c", 0.0),
        cooling_slope_kwh_per_c=slopes.get("cooling_slope_kwh_per_c", 0.0),
        heating_change_point_c=c.th,
        cooling_change_point_c=c.tc,
        coefficients=coefficients,
        stats=_stats(c.kind, [p.day for p in points], y, y - c.residuals),
        temperature_min_c=float(t.min()),
        temperature_max_c=float(t.max()),
        sufficiency=sufficiency,
    )


def check_sufficiency(
    points: Sequence[DailyPoint],
    period_days: int,
    *,
    min_days: int,
    min_span_c: float,
    min_share: float,
) -> str:
    """The sufficiency rule the baseline meets (a sentence), or BaselineRefused saying why.

    A full operating cycle (IPMVP): 365 or more usable days; else at least ``min_days``
    usable days covering at least ``min_span_c`` of outdoor temperature (savings then flag
    reporting days outside that range). Either way, at least ``min_share`` of the period's
    days must be usable (a whole day of kWh and of outdoor temperature).
    """
    if not points:
        raise BaselineRefused(
            "no_usable_days",
            "The baseline period has no day with both a whole day of kWh and an outdoor "
            "temperature: choose a period with data.",
        )
    n = len(points)
    share = n / max(period_days, 1)
    if share < min_share:
        raise BaselineRefused(
            "too_many_missing_days",
            f"Only {n} of the period's {period_days} days are usable ({share:.0%}); at least "
            f"{min_share:.0%} are needed. Fill the gaps (weather import, readings) or choose "
            "another period.",
        )
    temps = [p.temperature_c for p in points]
    span = max(temps) - min(temps)
    if n >= FULL_YEAR_DAYS:
        return f"full year: {n} usable days"
    if n >= min_days and span >= min_span_c:
        return (
            f"{n} usable days (< a year) spanning {span:.1f} °C of outdoor temperature"
            f" (at least {min_days} days and {min_span_c:g} °C required)"
        )
    raise BaselineRefused(
        "insufficient_data",
        f"{n} usable days spanning {span:.1f} °C: a baseline needs a full year "
        f"({FULL_YEAR_DAYS} days) or at least {min_days} days spanning {min_span_c:g} °C of "
        "outdoor temperature. Choose a longer baseline period.",
    )


def fit_baseline(
    points: Sequence[DailyPoint],
    period_days: int,
    *,
    min_days: int,
    min_span_c: float,
    min_share: float,
    kinds: Sequence[ModelKind] = MODEL_KINDS,
) -> BaselineModel:
    """Fit every model kind, keep those that qualify, return the lowest CV(RMSE).

    Raises BaselineRefused when the data are insufficient (check_sufficiency).
    """
    sufficiency = check_sufficiency(
        points, period_days, min_days=min_days, min_span_c=min_span_c, min_share=min_share
    )
    t = np.array([p.temperature_c for p in points], dtype=np.float64)
    y = np.array([p.energy_kwh for p in points], dtype=np.float64)
    # A site that used nothing has nothing to save, and its CV(RMSE) and NMBE divide by a
    # mean of 0: refused with its reason (422), not a ZeroDivisionError (500).
    if not y.any():
        raise BaselineRefused(
            "zero_consumption",
            f"The {len(points)} usable days of the baseline period have 0 kWh: a site that used "
            "nothing has no baseline to save from. Check its meters or choose another period.",
        )
    found = [c for c in (_search(k, t, y) for k in kinds) if c is not None and _qualifies(c)]
    if not found:
        raise BaselineRefused("no_model", "No change-point model qualifies for these days.")
    models = [_model(c, points, t, sufficiency) for c in found]
    return min(models, key=lambda m: (m.stats.cv_rmse_pct, m.stats.n_params))


def fractional_savings_uncertainty(
    *,
    cv_rmse: float,
    n: int,
    n_effective: float,
    m: int,
    savings_fraction: float,
    t_value: float,
) -> float:
    """ASHRAE Guideline 14-2014 Annex B: dE_save / E_save (a fraction; inf when F = 0).

    ``cv_rmse`` as a fraction (0.12, not 12).
    """
    if savings_fraction == 0:
        return math.inf
    root = math.sqrt((n / n_effective) * (1.0 + 2.0 / n_effective) * (1.0 / m))
    return abs(t_value * _G14_FSU_FACTOR * cv_rmse * root / savings_fraction)


@dataclass(frozen=True, slots=True)
class SavingsDay:
    day: date
    temperature_c: float
    actual_kwh: float
    predicted_kwh: float
    savings_kwh: float
    cusum_kwh: float
    extrapolated: bool  # outdoor temperature outside the baseline's range


@dataclass(frozen=True, slots=True)
class Savings:
    """Savings over a reporting period with their uncertainty, as plain numbers."""

    days: tuple[SavingsDay, ...]
    baseline_kwh: float  # the model's prediction over the reporting days
    actual_kwh: float
    savings_kwh: float
    savings_pct: float  # of the baseline prediction
    uncertainty_kwh: float  # half-width of the band at ``confidence``
    uncertainty_pct: float  # of the baseline prediction (percentage points of savings_pct)
    confidence: float
    fractional_uncertainty: float  # dE/E at ``confidence``
    fractional_uncertainty_68: float  # at 68 %, Guideline 14's test (< 50 %)
    meets_guideline_14_uncertainty: bool
    n_baseline: int
    n_effective: float
    m_reporting: int
    t_value: float
    extrapolated_days: int


def compute_savings(
    model: BaselineModel, points: Sequence[DailyPoint], *, confidence: float
) -> Savings:
    """Baseline prediction - actual per reporting day, cumulated, with the G14 uncertainty."""
    if not points:
        raise BaselineRefused(
            "no_reporting_days",
            "The reporting period has no day with both a whole day of kWh and an outdoor "
            "temperature of the baseline's source.",
        )
    if not 0 < confidence < 1:
        raise BaselineRefused("bad_confidence", "confidence must lie strictly between 0 and 1.")
    ordered = sorted(points, key=lambda p: p.day)
    t = np.array([p.temperature_c for p in ordered], dtype=np.float64)
    actual = np.array([p.energy_kwh for p in ordered], dtype=np.float64)
    predicted = model.predict(t)
    saved = predicted - actual
    cusum = np.cumsum(saved)
    days = tuple(
        SavingsDay(
            p.day,
            p.temperature_c,
            float(a),
            float(b),
            float(s),
            float(c),
            not (model.temperature_min_c <= p.temperature_c <= model.temperature_max_c),
        )
        for p, a, b, s, c in zip(ordered, actual, predicted, saved, cusum, strict=True)
    )
    base, act = float(predicted.sum()), float(actual.sum())
    total = base - act
    fraction = total / base if base else 0.0
    st = model.stats
    n, m = st.n_days, len(ordered)
    rho = min(max(st.autocorrelation_lag1, 0.0), 0.99)  # negative rho would shrink the band
    n_eff = n * (1 - rho) / (1 + rho)
    dof = max(n - st.n_params, 1)

    def t_at(level: float) -> float:
        return float(scipy_stats.t.ppf(0.5 + level / 2, dof))

    t_value = t_at(confidence)
    cv = st.cv_rmse_pct / 100

    def fsu_at(t_val: float) -> float:
        return fractional_savings_uncertainty(
            cv_rmse=cv, n=n, n_effective=n_eff, m=m, savings_fraction=fraction, t_value=t_val
        )

    fsu, fsu_68 = fsu_at(t_value), fsu_at(t_at(0.68))
    # The band in kWh does not depend on F: t * 1.26 * CV * sqrt(...) * E_baseline.
    root = math.sqrt((n / n_eff) * (1.0 + 2.0 / n_eff) / m)
    band = t_value * _G14_FSU_FACTOR * (st.cv_rmse_pct / 100) * root * base
    return Savings(
        days=days,
        baseline_kwh=base,
        actual_kwh=act,
        savings_kwh=total,
        savings_pct=100.0 * fraction,
        uncertainty_kwh=band,
        uncertainty_pct=100.0 * band / base if base else math.inf,
        confidence=confidence,
        fractional_uncertainty=fsu,
        fractional_uncertainty_68=fsu_68,
        meets_guideline_14_uncertainty=fsu_68 * 100 < G14_MAX_FSU_AT_68_PCT,
        n_baseline=n,
        n_effective=n_eff,
        m_reporting=m,
        t_value=t_value,
        extrapolated_days=sum(d.extrapolated for d in days),
    )
