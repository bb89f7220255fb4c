"""Pure per-hour energy accounting from a device's readings.

Energy comes from the cumulative counters (``energy_wh`` / ``energy_export_wh``) when the
device reports them, else from the trapezoidal integral of ``power_w``. Everything here is
pure: no I/O, no settings. The user-facing rules are in ``docs/energy.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Literal

import msgspec

__all__ = [
    "DEFAULT_COUNTER_RESET_TOLERANCE_WH",
    "DEFAULT_MAX_GAP",
    "FLAG_COUNTER_NOISE",
    "FLAG_COUNTER_RESET",
    "FLAG_EXPORT_FROM_POWER",
    "FLAG_NEGATIVE_POWER_IGNORED",
    "FLAG_UNALLOCATED_ENERGY",
    "HOUR",
    "QUARTERS_PER_HOUR",
    "QUARTER_HOUR",
    "EnergySample",
    "EnergySource",
    "HourlyEnergy",
    "hour_floor",
    "hourly_energy",
    "quarter_hour_energy",
    "touched_hours",
    "trapezoid_wh",
]

HOUR = timedelta(hours=1)
# Electricity demand is billed and charted by the quarter hour (the 15-minute demand
# interval of Korean and European tariffs); four of them make an hour exactly.
QUARTER_HOUR = timedelta(minutes=15)
QUARTERS_PER_HOUR = 4
DEFAULT_MAX_GAP = timedelta(seconds=60)
# Counters on common meters report whole Wh (or 0.1 Wh); a few Wh of jitter is noise, a
# larger drop means the device rebooted or its counter was cleared.
DEFAULT_COUNTER_RESET_TOLERANCE_WH = 10.0

FLAG_UNALLOCATED_ENERGY = "unallocated_energy"
FLAG_COUNTER_RESET = "counter_reset"
FLAG_COUNTER_NOISE = "counter_noise"
FLAG_EXPORT_FROM_POWER = "export_from_power"
FLAG_NEGATIVE_POWER_IGNORED = "negative_power_ignored"

EnergySource = Literal["counter", "power"]

_US_PER_HOUR = 3_600_000_000
_SECONDS_PER_HOUR = 3600.0
_WH_PER_KWH = 1000.0


class EnergySample(msgspec.Struct, frozen=True, kw_only=True):
    """One reading of one device; ``ts`` must be timezone-aware."""

    ts: datetime
    power_w: float | None = None
    energy_wh: float | None = None
    energy_export_wh: float | None = None
    temperature_c: float | None = None
    humidity_pct: float | None = None
    brightness_lux: float | None = None


class HourlyEnergy(msgspec.Struct, frozen=True, kw_only=True):
    """Energy, coverage and statistics of one device for one UTC hour."""

    hour_start: datetime
    energy_kwh: float
    export_kwh: float
    unallocated_kwh: float
    unallocated_export_kwh: float
    coverage: float
    samples: int
    power_avg_w: float | None
    power_min_w: float | None
    power_max_w: float | None
    temperature_avg_c: float | None
    humidity_avg_pct: float | None
    brightness_avg_lux: float | None
    source: EnergySource | None
    flags: tuple[str, ...]


def hour_floor(ts: datetime) -> datetime:
    """Start of the UTC hour containing ``ts`` (returned in UTC)."""
    _require_aware(ts, "ts")
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def touched_hours(ts: datetime, max_gap: timedelta = DEFAULT_MAX_GAP) -> list[datetime]:
    """UTC hours whose result a reading at ``ts`` can change, in order.

    Its own hour, plus every hour within ``max_gap`` of it (the neighbour when near a boundary).
    """
    _require_aware(ts, "ts")
    if max_gap < timedelta(0):
        raise ValueError("max_gap must not be negative")
    # Only intervals no longer than max_gap are split over hours, so a reading can reach at
    # most max_gap into the past or the future.
    first = hour_floor(ts - max_gap)
    last = hour_floor(ts + max_gap)
    hours: list[datetime] = []
    hour = first
    while hour <= last:
        hours.append(hour)
        hour += HOUR
    return hours


def trapezoid_wh(p0_w: float, p1_w: float, duration_s: float) -> tuple[float, float]:
    """Import and export Wh (both >= 0) of power moving linearly from p0 to p1 over duration_s.

    An interval crossing zero is split at the (linear) zero crossing.
    """
    import_ws, export_ws = _trapezoid_ws(p0_w, p1_w, duration_s)
    return import_ws / _SECONDS_PER_HOUR, export_ws / _SECONDS_PER_HOUR


def hourly_energy(
    samples: Iterable[EnergySample],
    start: datetime,
    end: datetime,
    *,
    max_gap: timedelta = DEFAULT_MAX_GAP,
    counter_reset_tolerance_wh: float = DEFAULT_COUNTER_RESET_TOLERANCE_WH,
    bidirectional: bool = False,
) -> list[HourlyEnergy]:
    """Per-hour energy for every UTC hour in [start, end) from one device's readings.

    Pass the readings inside the range plus the last one before and the first one after it.
    """
    return _bucket_energy(
        samples,
        start,
        end,
        per_hour=1,
        max_gap=max_gap,
        counter_reset_tolerance_wh=counter_reset_tolerance_wh,
        bidirectional=bidirectional,
    )


def quarter_hour_energy(
    samples: Iterable[EnergySample],
    start: datetime,
    end: datetime,
    *,
    max_gap: timedelta = DEFAULT_MAX_GAP,
    counter_reset_tolerance_wh: float = DEFAULT_COUNTER_RESET_TOLERANCE_WH,
    bidirectional: bool = False,
) -> list[HourlyEnergy]:
    """The same figures per quarter hour of the UTC hours [start, end) (``hour_start``: the
    quarter's start, ``coverage``: of the quarter).

    The rules are hourly_energy's, applied to the same readings: intervals are split at
    quarter boundaries as they are at hour boundaries, and the energy source (counter or
    power) is decided per *hour*, so the four quarters of an hour always add up to it
    (energy, export, unallocated energy, samples; coverage averages to it), up to float
    rounding of the sums.
    """
    return _bucket_energy(
        samples,
        start,
        end,
        per_hour=QUARTERS_PER_HOUR,
        max_gap=max_gap,
        counter_reset_tolerance_wh=counter_reset_tolerance_wh,
        bidirectional=bidirectional,
    )


def _bucket_energy(
    samples: Iterable[EnergySample],
    start: datetime,
    end: datetime,
    *,
    per_hour: int,
    max_gap: timedelta,
    counter_reset_tolerance_wh: float,
    bidirectional: bool,
) -> list[HourlyEnergy]:
    """Energy per bucket of 1/``per_hour`` hour over the UTC hours [start, end); the source is
    per hour. Hours and quarters check their arguments here, so both refuse the same input."""
    start_utc = _require_hour_aligned(start, "start")
    end_utc = _require_hour_aligned(end, "end")
    if end_utc < start_utc:
        raise ValueError("end must not be before start")
    if max_gap < timedelta(0):
        raise ValueError("max_gap must not be negative")
    if counter_reset_tolerance_wh < 0:
        raise ValueError("counter_reset_tolerance_wh must not be negative")
    n_buckets = (end_utc - start_utc) // HOUR * per_hour
    if n_buckets == 0:
        return []
    bucket_us = _US_PER_HOUR // per_hour
    # Integer microseconds relative to start keep the time arithmetic exact; only energy is
    # float.
    readings = sorted(
        ((_us_since(_require_aware(s.ts, "sample ts"), start_utc), _finite(s)) for s in samples),
        key=lambda pair: pair[0],
    )
    gap_us = _td_us(max_gap)
    acc = [_HourAccumulator() for _ in range(n_buckets)]
    n_hours = -(-n_buckets // per_hour)

    _collect_point_stats(readings, acc, bucket_us)
    # Which series gives an hour's energy is decided per hour, whatever the bucket.
    counter_hours = _hours_touched_by(readings, "energy_wh", gap_us, n_hours)
    export_counter_hours = _hours_touched_by(readings, "energy_export_wh", gap_us, n_hours)
    power_hours = _hours_touched_by(readings, "power_w", gap_us, n_hours)

    _integrate_power(readings, acc, gap_us, bucket_us)
    _accumulate_counter(
        [(t, s.energy_wh) for t, s in readings if s.energy_wh is not None],
        acc,
        gap_us,
        counter_reset_tolerance_wh,
        export=False,
        bucket_us=bucket_us,
    )
    if bidirectional:
        _accumulate_counter(
            [(t, s.energy_export_wh) for t, s in readings if s.energy_export_wh is not None],
            acc,
            gap_us,
            counter_reset_tolerance_wh,
            export=True,
            bucket_us=bucket_us,
        )

    return [
        acc[i].result(
            hour_start=start_utc + timedelta(microseconds=i * bucket_us),
            source=(
                "counter"
                if i // per_hour in counter_hours
                else "power"
                if i // per_hour in power_hours
                else None
            ),
            export_counter=i // per_hour in export_counter_hours,
            bidirectional=bidirectional,
            bucket_us=bucket_us,
        )
        for i in range(n_buckets)
    ]


class _HourAccumulator:
    """Mutable per-hour partial sums; every energy term is summed with fsum at the end."""

    __slots__ = (
        "brightness",
        "counter_covered_us",
        "counter_export_wh",
        "counter_flags",
        "counter_import_wh",
        "humidity",
        "n_samples",
        "power_covered_us",
        "power_export_ws",
        "power_import_ws",
        "power_negative",
        "power_signed_ws",
        "power_values",
        "temperature",
        "unallocated_export_wh",
        "unallocated_import_wh",
    )

    def __init__(self) -> None:
        self.n_samples = 0
        self.power_values: list[float] = []
        self.temperature: list[float] = []
        self.humidity: list[float] = []
        self.brightness: list[float] = []
        self.power_import_ws: list[float] = []
        self.power_export_ws: list[float] = []
        self.power_signed_ws: list[float] = []
        self.power_covered_us = 0
        self.power_negative = False
        self.counter_import_wh: list[float] = []
        self.counter_export_wh: list[float] = []
        self.unallocated_import_wh: list[float] = []
        self.unallocated_export_wh: list[float] = []
        self.counter_covered_us = 0
        self.counter_flags: set[str] = set()

    def result(
        self,
        *,
        hour_start: datetime,
        source: EnergySource | None,
        export_counter: bool,
        bidirectional: bool,
        bucket_us: int = _US_PER_HOUR,
    ) -> HourlyEnergy:
        flags: set[str] = set()
        import_wh = 0.0
        export_wh = 0.0
        unallocated_wh = 0.0
        unallocated_export_wh = 0.0
        covered_us = 0
        power_export_wh = math.fsum(self.power_export_ws) / _SECONDS_PER_HOUR
        if source == "counter":
            import_wh = math.fsum(self.counter_import_wh)
            unallocated_wh = math.fsum(self.unallocated_import_wh)
            covered_us = self.counter_covered_us
            flags |= self.counter_flags
            if bidirectional and export_counter:
                export_wh = math.fsum(self.counter_export_wh)
                unallocated_export_wh = math.fsum(self.unallocated_export_wh)
            elif bidirectional:
                export_wh = power_export_wh
                if export_wh > 0:
                    flags.add(FLAG_EXPORT_FROM_POWER)
        elif source == "power":
            import_wh = math.fsum(self.power_import_ws) / _SECONDS_PER_HOUR
            covered_us = self.power_covered_us
            if bidirectional:
                export_wh = power_export_wh
            elif self.power_negative:
                flags.add(FLAG_NEGATIVE_POWER_IGNORED)

        power_avg_w = (
            math.fsum(self.power_signed_ws) / (self.power_covered_us / 1e6)
            if self.power_covered_us > 0
            else None
        )
        return HourlyEnergy(
            hour_start=hour_start,
            energy_kwh=import_wh / _WH_PER_KWH,
            export_kwh=export_wh / _WH_PER_KWH,
            unallocated_kwh=unallocated_wh / _WH_PER_KWH,
            unallocated_export_kwh=unallocated_export_wh / _WH_PER_KWH,
            coverage=min(1.0, covered_us / bucket_us),
            samples=self.n_samples,
            power_avg_w=power_avg_w,
            power_min_w=min(self.power_values) if self.power_values else None,
            power_max_w=max(self.power_values) if self.power_values else None,
            temperature_avg_c=_mean(self.temperature),
            humidity_avg_pct=_mean(self.humidity),
            brightness_avg_lux=_mean(self.brightness),
            source=source,
            flags=tuple(sorted(flags)),
        )


_Reading = tuple[int, EnergySample]
_VALUE_FIELDS = (
    "power_w",
    "energy_wh",
    "energy_export_wh",
    "temperature_c",
    "humidity_pct",
    "brightness_lux",
)
_Field = Literal["energy_wh", "energy_export_wh", "power_w"]


def _collect_point_stats(
    readings: Sequence[_Reading], acc: list[_HourAccumulator], bucket_us: int
) -> None:
    for t_us, s in readings:
        i = _hour_index(t_us, len(acc), bucket_us)
        if i is None:
            continue
        a = acc[i]
        a.n_samples += 1
        if s.power_w is not None:
            a.power_values.append(s.power_w)
        if s.temperature_c is not None:
            a.temperature.append(s.temperature_c)
        if s.humidity_pct is not None:
            a.humidity.append(s.humidity_pct)
        if s.brightness_lux is not None:
            a.brightness.append(s.brightness_lux)


def _hours_touched_by(
    readings: Sequence[_Reading], field: _Field, gap_us: int, n_hours: int
) -> set[int]:
    """Hour indexes touched (see touched_hours) by a reading carrying ``field``."""
    hours: set[int] = set()
    for t_us, s in readings:
        if getattr(s, field) is None:
            continue
        first = max(0, (t_us - gap_us) // _US_PER_HOUR)
        last = min(n_hours - 1, (t_us + gap_us) // _US_PER_HOUR)
        hours.update(range(first, last + 1))
    return hours


def _integrate_power(
    readings: Sequence[_Reading], acc: list[_HourAccumulator], gap_us: int, bucket_us: int
) -> None:
    power = [(t, s.power_w) for t, s in readings if s.power_w is not None]
    range_end_us = len(acc) * bucket_us
    for (t0, p0), (t1, p1) in pairwise(power):
        # A gap longer than max_gap is unknown, not zero: it adds nothing and is not covered.
        if t1 <= t0 or t1 - t0 > gap_us or t1 <= 0 or t0 >= range_end_us:
            continue
        for i, a_us, b_us in _split_by_hour(t0, t1, len(acc), bucket_us):
            pa = _lerp(p0, p1, t0, t1, a_us)
            pb = _lerp(p0, p1, t0, t1, b_us)
            seconds = (b_us - a_us) / 1e6
            import_ws, export_ws = _trapezoid_ws(pa, pb, seconds)
            h = acc[i]
            h.power_import_ws.append(import_ws)
            h.power_export_ws.append(export_ws)
            h.power_signed_ws.append((pa + pb) / 2.0 * seconds)
            h.power_covered_us += b_us - a_us
            if export_ws > 0:
                h.power_negative = True


def _accumulate_counter(
    series: Sequence[tuple[int, float]],
    acc: list[_HourAccumulator],
    gap_us: int,
    tolerance_wh: float,
    *,
    export: bool,
    bucket_us: int,
) -> None:
    if not series:
        return
    n_hours = len(acc)
    # The baseline is the highest value seen since the last reset, so a noisy dip followed by
    # a climb back is not counted twice.
    baseline = series[0][1]
    for (t0, _), (t1, value) in pairwise(series):
        i1 = _hour_index(t1, n_hours, bucket_us)
        flag: str | None = None
        if value >= baseline:
            delta = value - baseline
            baseline = value
        elif baseline - value > tolerance_wh:
            flag = FLAG_COUNTER_RESET
            delta = value  # the counter restarted from 0
            baseline = value
        else:
            flag = FLAG_COUNTER_NOISE
            delta = 0.0
        if flag is not None and i1 is not None:
            acc[i1].counter_flags.add(flag)

        if t1 - t0 > gap_us or t1 == t0:
            # Across a long gap the energy is real but its timing unknown: it is booked where
            # it was observed, never smeared over the gap nor dropped.
            if i1 is not None and delta > 0:
                h = acc[i1]
                if t1 == t0:
                    (h.counter_export_wh if export else h.counter_import_wh).append(delta)
                else:
                    (h.unallocated_export_wh if export else h.unallocated_import_wh).append(delta)
                    h.counter_flags.add(FLAG_UNALLOCATED_ENERGY)
            continue

        for i, a_us, b_us in _split_by_hour(t0, t1, n_hours, bucket_us):
            h = acc[i]
            if delta > 0:
                share = delta * ((b_us - a_us) / (t1 - t0))
                (h.counter_export_wh if export else h.counter_import_wh).append(share)
            if not export:
                h.counter_covered_us += b_us - a_us


def _split_by_hour(
    t0: int, t1: int, n_hours: int, bucket_us: int = _US_PER_HOUR
) -> list[tuple[int, int, int]]:
    """Pieces (bucket index, from, to) of [t0, t1] that fall into buckets 0..n_hours-1."""
    pieces: list[tuple[int, int, int]] = []
    lo = max(t0, 0)
    hi = min(t1, n_hours * bucket_us)
    a = lo
    while a < hi:
        i = a // bucket_us
        b = min(hi, (i + 1) * bucket_us)
        pieces.append((i, a, b))
        a = b
    return pieces


def _trapezoid_ws(p0_w: float, p1_w: float, duration_s: float) -> tuple[float, float]:
    if duration_s < 0:
        raise ValueError("duration_s must not be negative")
    if p0_w >= 0 and p1_w >= 0:
        return (p0_w + p1_w) / 2.0 * duration_s, 0.0
    if p0_w <= 0 and p1_w <= 0:
        return 0.0, -(p0_w + p1_w) / 2.0 * duration_s
    # Opposite signs: each side of the zero crossing is a triangle.
    # Rounding can put the crossing a hair outside the interval when one side is tiny.
    t_zero = min(duration_s, max(0.0, duration_s * p0_w / (p0_w - p1_w)))
    first = abs(p0_w) * t_zero / 2.0
    second = abs(p1_w) * (duration_s - t_zero) / 2.0
    if p0_w > 0:
        return first, second
    return second, first


def _finite(s: EnergySample) -> EnergySample:
    """The sample with NaN/inf values treated as absent, so one bad value cannot poison sums."""
    bad = {
        name: None
        for name in _VALUE_FIELDS
        if (v := getattr(s, name)) is not None and not math.isfinite(v)
    }
    return msgspec.structs.replace(s, **bad) if bad else s


def _lerp(p0: float, p1: float, t0: int, t1: int, t: int) -> float:
    if t == t0:
        return p0
    if t == t1:
        return p1
    return p0 + (p1 - p0) * ((t - t0) / (t1 - t0))


def _hour_index(t_us: int, n_hours: int, bucket_us: int = _US_PER_HOUR) -> int | None:
    i = t_us // bucket_us
    return i if 0 <= i < n_hours else None


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _td_us(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)


def _us_since(ts: datetime, origin: datetime) -> int:
    return _td_us(ts - origin)


def _require_aware(ts: datetime, name: str) -> datetime:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {ts.isoformat()}")
    return ts


def _require_hour_aligned(ts: datetime, name: str) -> datetime:
    utc = _require_aware(ts, name).astimezone(UTC)
    if utc != hour_floor(utc):
        raise ValueError(f"{name} must be on a UTC hour boundary, got {ts.isoformat()}")
    return utc
