"""Alert rules as pure code: what each kind of rule means, its parameters, and its verdict.

Six kinds (docs/architecture.md, "Alerts"):

- ``silence``: a device sent nothing for ``minutes``.
- ``power_above`` / ``power_below``: every reading of a device for ``minutes`` was above
  (below) ``threshold_w``. A run of readings is broken by a reading on the other side or by a
  gap longer than ``max_gap`` (no evidence for the gap): the run starts again.
- ``base_load_jump``: a night's base load (the lowest hourly average power between 01:00 and
  05:00 local time) far above the same subject's last 28 nights.
- ``daily_kwh_above`` / ``daily_kwh_below``: a local day's kWh far above (below) the same
  day type (workday, or weekend and public holiday) of the last 28 days, or outside a fitted
  baseline's band when one exists.

"Far" is robust: ``median + k * 1.4826 * MAD`` of the history (1.4826 * MAD estimates the
standard deviation of normal data, and one odd night or a holiday in the history moves it
little, unlike a mean and standard deviation) and at least ``min_change_pct`` away from the
median, so a perfectly flat history (MAD 0) does not fire on a 0.1 % change.

Everything here is pure: no I/O, no settings. Verdicts are ``None`` when there is not enough
data to say (an alert is then neither raised nor cleared).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Literal, Protocol, get_args
from zoneinfo import ZoneInfo

import holidays
import msgspec

from powerflow_common.errors import PowerflowError

__all__ = [
    "DAILY_KINDS",
    "HISTORY_DAYS",
    "KINDS",
    "LIVE_KINDS",
    "MAD_TO_SIGMA",
    "NIGHT_END",
    "NIGHT_START",
    "BaseLoadParams",
    "DailyParams",
    "DayType",
    "ExpectedDay",
    "FittedBaselines",
    "InvalidRule",
    "NoFittedBaselines",
    "PowerRun",
    "RobustBand",
    "RuleKind",
    "RuleParams",
    "SilenceParams",
    "ThresholdParams",
    "Verdict",
    "advance_run",
    "base_load_verdict",
    "base_load_w",
    "comparison_days",
    "daily_verdict",
    "day_type",
    "knows_holidays",
    "night_bounds_utc",
    "parse_params",
    "robust_band",
    "run_verdict",
    "silence_verdict",
]

RuleKind = Literal[
    "silence",
    "power_above",
    "power_below",
    "base_load_jump",
    "daily_kwh_above",
    "daily_kwh_below",
]
KINDS: tuple[RuleKind, ...] = get_args(RuleKind)
# Evaluated on the live readings (and a timer); the others when hours are rolled up.
LIVE_KINDS: frozenset[str] = frozenset({"silence", "power_above", "power_below"})
DAILY_KINDS: frozenset[str] = frozenset({"daily_kwh_above", "daily_kwh_below"})

# 1.4826 * MAD is a consistent estimator of the standard deviation for normal data.
MAD_TO_SIGMA = 1.4826
HISTORY_DAYS = 28
# The night window, local time: after late work and cleaning, before early shifts and
# deliveries, so what still runs is what always runs (standby, servers, refrigeration, leaks).
# KEPCO's light-load band (22:00-08:00) is wider, but its edges carry people's activity.
NIGHT_START = time(1, 0)
NIGHT_END = time(5, 0)
# An hour counts towards a base load only when its devices reported most of it: a meter that
# was away would otherwise look like a base load of zero.
MIN_NIGHT_COVERAGE = 0.8
_MAX_MINUTES = 7 * 24 * 60
_MAX_ABS_W = 1e8


class InvalidRule(PowerflowError):
    """A rule that cannot be stored: ``reason`` machine-readable, ``detail`` for people."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SilenceParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    minutes: float


class ThresholdParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    threshold_w: float
    minutes: float


class BaseLoadParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    k: float = 3.0
    min_change_pct: float = 10.0
    min_history: int = 14  # nights


class DailyParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    k: float = 3.0
    min_change_pct: float = 10.0
    min_history: int = 4  # days of the same day type


RuleParams = SilenceParams | ThresholdParams | BaseLoadParams | DailyParams

_PARAM_TYPES: dict[str, type[RuleParams]] = {
    "silence": SilenceParams,
    "power_above": ThresholdParams,
    "power_below": ThresholdParams,
    "base_load_jump": BaseLoadParams,
    "daily_kwh_above": DailyParams,
    "daily_kwh_below": DailyParams,
}


def _check(ok: bool, detail: str) -> None:
    if not ok:
        raise InvalidRule("invalid_parameter", detail)


def parse_params(kind: str, raw: Mapping[str, Any]) -> RuleParams:
    """The parameters of a rule of ``kind``, checked; InvalidRule says what is wrong."""
    if kind not in _PARAM_TYPES:
        raise InvalidRule("unknown_kind", f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    try:
        params = msgspec.convert(dict(raw), _PARAM_TYPES[kind], strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidRule("invalid_parameter", f"{kind}: {exc}") from None
    if isinstance(params, SilenceParams | ThresholdParams):
        _check(
            math.isfinite(params.minutes) and 1 <= params.minutes <= _MAX_MINUTES,
            f"minutes must be between 1 and {_MAX_MINUTES}",
        )
    if isinstance(params, ThresholdParams):
        _check(
            math.isfinite(params.threshold_w) and abs(params.threshold_w) <= _MAX_ABS_W,
            f"threshold_w must be a finite number of watts within ±{_MAX_ABS_W:g}",
        )
    if isinstance(params, BaseLoadParams | DailyParams):
        _check(math.isfinite(params.k) and 0.5 <= params.k <= 20, "k must be between 0.5 and 20")
        _check(
            math.isfinite(params.min_change_pct) and 0 <= params.min_change_pct <= 1000,
            "min_change_pct must be between 0 and 1000",
        )
        top = HISTORY_DAYS if isinstance(params, BaseLoadParams) else 20
        _check(3 <= params.min_history <= top, f"min_history must be between 3 and {top}")
    return params


class Verdict(msgspec.Struct, frozen=True):
    """Whether the condition holds now, and the evidence either way (stored with the alert)."""

    firing: bool
    evidence: dict[str, Any]


# --- silence -----------------------------------------------------------------------------


def silence_verdict(last_seen: datetime | None, now: datetime, params: SilenceParams) -> Verdict:
    """Firing when nothing came for ``minutes``; a device never seen is silent since forever."""
    silent_s = None if last_seen is None else (now - last_seen).total_seconds()
    firing = silent_s is None or silent_s >= params.minutes * 60
    return Verdict(
        firing,
        {
            "last_seen_at": None if last_seen is None else last_seen.isoformat(),
            "silent_s": None if silent_s is None else round(silent_s, 3),
            "limit_minutes": params.minutes,
        },
    )


# --- power above / below for N minutes ------------------------------------------------------


class PowerRun(msgspec.Struct, frozen=True):
    """Consecutive readings on the alerting side of the threshold, with no gap over max_gap."""

    started_at: datetime
    last_at: datetime
    samples: int
    extreme_w: float  # the highest (above) or lowest (below) power of the run


def _beyond(kind: str, power_w: float, threshold_w: float) -> bool:
    return power_w > threshold_w if kind == "power_above" else power_w < threshold_w


def advance_run(
    run: PowerRun | None,
    kind: str,
    ts: datetime,
    power_w: float,
    threshold_w: float,
    max_gap: timedelta,
) -> PowerRun | None:
    """The run after one more reading (readings in time order; an older one changes nothing)."""
    if run is not None and ts <= run.last_at:
        return run
    if not _beyond(kind, power_w, threshold_w):
        return None
    if run is None or ts - run.last_at > max_gap:
        return PowerRun(ts, ts, 1, power_w)
    pick = max if kind == "power_above" else min
    return PowerRun(run.started_at, ts, run.samples + 1, pick(run.extreme_w, power_w))


def run_verdict(run: PowerRun | None, kind: str, params: ThresholdParams) -> Verdict:
    """Firing when the run has lasted ``minutes`` (from its first to its latest reading)."""
    lasted_s = 0.0 if run is None else (run.last_at - run.started_at).total_seconds()
    evidence: dict[str, Any] = {
        "threshold_w": params.threshold_w,
        "limit_minutes": params.minutes,
        "direction": "above" if kind == "power_above" else "below",
        "lasted_s": round(lasted_s, 3),
    }
    if run is not None:
        evidence |= {
            "since": run.started_at.isoformat(),
            "latest_at": run.last_at.isoformat(),
            "samples": run.samples,
            "extreme_w": run.extreme_w,
        }
    return Verdict(run is not None and lasted_s >= params.minutes * 60, evidence)


# --- robust history band -------------------------------------------------------------------


class RobustBand(msgspec.Struct, frozen=True):
    median: float
    sigma: float  # 1.4826 * MAD
    n: int


def robust_band(history: Sequence[float]) -> RobustBand:
    """Median and MAD-based sigma of ``history`` (which must not be empty)."""
    median = statistics.median(history)
    mad = statistics.median(abs(x - median) for x in history)
    return RobustBand(median, MAD_TO_SIGMA * mad, len(history))


def _limits(band: RobustBand, k: float, min_change_pct: float) -> tuple[float, float]:
    """(low, high): outside them is far from the history."""
    margin = max(k * band.sigma, abs(band.median) * min_change_pct / 100.0)
    return band.median - margin, band.median + margin


def _band_verdict(
    value: float,
    history: Sequence[float],
    *,
    direction: Literal["above", "below"],
    k: float,
    min_change_pct: float,
    min_history: int,
    unit: str,
) -> Verdict | None:
    if len(history) < min_history:
        return None
    band = robust_band(history)
    low, high = _limits(band, k, min_change_pct)
    firing = value > high if direction == "above" else value < low
    return Verdict(
        firing,
        {
            f"value_{unit}": round(value, 6),
            f"median_{unit}": round(band.median, 6),
            f"sigma_{unit}": round(band.sigma, 6),
            f"limit_{unit}": round(high if direction == "above" else low, 6),
            "k": k,
            "min_change_pct": min_change_pct,
            "history": band.n,
            "statistic": "median + k * 1.4826 * MAD",
        },
    )


# --- base load ------------------------------------------------------------------------------


def night_bounds_utc(night_of: date, tz: str) -> tuple[datetime, datetime]:
    """UTC [start, end) of the night window (01:00-05:00 local) of the local date ``night_of``."""
    zone = ZoneInfo(tz)
    start = datetime.combine(night_of, NIGHT_START, zone).astimezone(UTC)
    end = datetime.combine(night_of, NIGHT_END, zone).astimezone(UTC)
    return start, end


def base_load_w(hours: Sequence[tuple[float, float]], expected_hours: int) -> float | None:
    """The night's base load: the lowest hourly average power (W) of its hours.

    ``hours`` are (average power W, coverage 0..1) of the night's hours with data; None when
    an hour is missing or under MIN_NIGHT_COVERAGE (a meter away is no base load of zero).
    """
    if len(hours) < expected_hours or any(cov < MIN_NIGHT_COVERAGE for _, cov in hours):
        return None
    return min(w for w, _ in hours)


def base_load_verdict(
    tonight_w: float, history_w: Sequence[float], params: BaseLoadParams
) -> Verdict | None:
    """Firing when tonight's base load is far above the last nights' (None: too few nights)."""
    return _band_verdict(
        tonight_w,
        history_w,
        direction="above",
        k=params.k,
        min_change_pct=params.min_change_pct,
        min_history=params.min_history,
        unit="w",
    )


# --- daily kWh ------------------------------------------------------------------------------

DayType = Literal["workday", "offday"]


@lru_cache(maxsize=64)
def _holidays(country: str, year: int) -> holidays.HolidayBase | None:
    try:
        return holidays.country_holidays(country, years=year)
    except NotImplementedError:
        return None  # a region the library does not know: weekends only


def knows_holidays(country: str) -> bool:
    """Whether public holidays of ``country`` are known (else only weekends are off days)."""
    return _holidays(country.upper()[:2], 2026) is not None


def day_type(day: date, country: str) -> DayType:
    """Saturday, Sunday and the country's public holidays are off days; the rest workdays."""
    if day.weekday() >= 5:
        return "offday"
    calendar = _holidays(country.upper()[:2], day.year)
    return "offday" if calendar is not None and day in calendar else "workday"


def comparison_days(day: date, country: str) -> list[date]:
    """The days of the last 28 before ``day`` of the same day type, oldest first."""
    kind = day_type(day, country)
    return [
        d
        for d in (day - timedelta(days=n) for n in range(HISTORY_DAYS, 0, -1))
        if day_type(d, country) == kind
    ]


class ExpectedDay(msgspec.Struct, frozen=True):
    """A fitted baseline's prediction for one day and the half-width of its band (kWh)."""

    expected_kwh: float
    tolerance_kwh: float
    source: str  # e.g. "baseline 3 (HDD/CDD, 2026-01..2026-06)"


class FittedBaselines(Protocol):
    """What a fitted-baseline module offers the daily rules; None where it has no model."""

    def expected_day(self, site_id: int, day: date) -> ExpectedDay | None: ...


class NoFittedBaselines:
    """No fitted baselines: the daily rules compare with the same day type's history."""

    def expected_day(self, site_id: int, day: date) -> ExpectedDay | None:
        return None


def daily_verdict(
    kind: str,
    kwh: float,
    history_kwh: Sequence[float],
    params: DailyParams,
    expected: ExpectedDay | None = None,
) -> Verdict | None:
    """Firing when the day's kWh is far above (below) its baseline (None: too little history)."""
    direction: Literal["above", "below"] = "above" if kind == "daily_kwh_above" else "below"
    if expected is not None:
        low = expected.expected_kwh - expected.tolerance_kwh
        high = expected.expected_kwh + expected.tolerance_kwh
        firing = kwh > high if direction == "above" else kwh < low
        return Verdict(
            firing,
            {
                "value_kwh": round(kwh, 6),
                "expected_kwh": round(expected.expected_kwh, 6),
                "limit_kwh": round(high if direction == "above" else low, 6),
                "baseline": expected.source,
            },
        )
    return _band_verdict(
        kwh,
        history_kwh,
        direction=direction,
        k=params.k,
        min_change_pct=params.min_change_pct,
        min_history=params.min_history,
        unit="kwh",
    )
