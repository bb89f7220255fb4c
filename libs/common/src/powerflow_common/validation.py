"""Validation rules every canonical reading must pass, whichever format it came in."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import msgspec

from powerflow_common.errors import Rejected
from powerflow_common.wire import Reading

if TYPE_CHECKING:
    from powerflow_common.settings import Settings

DEVICE_CODE_PATTERN = re.compile(r"[A-Za-z0-9_:-]{1,64}")
# A MAC address as firmwares print it: six hex octets, one separator throughout. The same
# physical device must not become two devices because one firmware prints ``a4-cf-...`` and
# another ``A4:CF:...``. Twelve bare hex digits are left alone: numeric codes such as
# ``100000000001`` are hex digits too, and must stay what the user enrolled.
MAC_LIKE_CODE = re.compile(r"[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}")
MAC_SEPARATOR = ":"
EARLIEST_TS = datetime(2020, 1, 1, tzinfo=UTC)
MAX_UTC_OFFSET = timedelta(hours=14)

# Physical ranges (inclusive) per field; None means unbounded on that side.
RANGES: dict[str, tuple[float | None, float | None]] = {
    "temperature_c": (-40.0, 125.0),
    "humidity_pct": (0.0, 100.0),
    "brightness_lux": (0.0, None),
    "energy_wh": (0.0, None),
    "energy_export_wh": (0.0, None),
    "voltage_v": (0.0, 2_000.0),
    "current_a": (0.0, None),
}


@dataclass(frozen=True, slots=True)
class Limits:
    """The configurable parts of validation."""

    max_power_w: float = 100_000.0
    max_future: timedelta = timedelta(minutes=5)
    allow_negative_power: bool = False  # only for devices marked bidirectional


def canonical_device_code(code: str) -> str:
    """The one form of a device code everywhere: exact, except MAC-like codes.

    Codes compare exactly (case-sensitive, a binary collation in the database), except a
    MAC address (six hex octets separated by ``:`` or ``-``), which becomes upper case with
    ``:`` separators: ``a4-cf-12-9b-00-01`` is ``A4:CF:12:9B:00:01``.
    """
    match = MAC_LIKE_CODE.fullmatch(code)
    if match is None:
        return code
    return code.upper().replace(match.group(1), MAC_SEPARATOR)


def check_device_code(code: str) -> str:
    """The canonical code when it matches the device code pattern, else Rejected."""
    if not DEVICE_CODE_PATTERN.fullmatch(code):
        raise Rejected(
            "invalid_device_code",
            f"device code {code[:80]!r} must match {DEVICE_CODE_PATTERN.pattern}",
        )
    return canonical_device_code(code)


def truncate_to_ms(ts: datetime) -> datetime:
    """``ts`` in UTC with microseconds cut to milliseconds, the stored precision."""
    ts = ts.astimezone(UTC)
    return ts.replace(microsecond=ts.microsecond // 1000 * 1000)


def check_timestamp(
    ts: datetime, now: datetime, limits: Limits, *, local: bool = False
) -> datetime:
    """The timestamp at millisecond precision, if it is neither too old nor ahead.

    A ``local`` timestamp is naive local time: it is checked with a margin of the largest UTC
    offset (14 h) and stays naive; the writer resolves it with the device's timezone.
    """
    if local:
        if ts.tzinfo is not None:
            ts = ts.replace(tzinfo=None)
        ts = ts.replace(microsecond=ts.microsecond // 1000 * 1000)
        naive_now = now.astimezone(UTC).replace(tzinfo=None)
        if ts < EARLIEST_TS.replace(tzinfo=None) - MAX_UTC_OFFSET:
            raise Rejected("timestamp_too_old", f"timestamp {ts.isoformat()} is before 2020")
        if ts > naive_now + MAX_UTC_OFFSET + limits.max_future:
            raise Rejected("timestamp_in_future", f"local time {ts.isoformat()} is ahead")
        return ts
    if ts.tzinfo is None:
        raise Rejected("timestamp_no_offset", "timestamp has no UTC offset")
    ts = truncate_to_ms(ts)
    if ts < EARLIEST_TS:
        raise Rejected("timestamp_too_old", f"timestamp {ts.isoformat()} is before 2020")
    if ts > now + limits.max_future:
        raise Rejected(
            "timestamp_in_future",
            f"timestamp {ts.isoformat()} is more than {limits.max_future} "
            f"ahead of {now.isoformat()}",
        )
    return ts


def validate(reading: Reading, now: datetime, limits: Limits) -> Reading:
    """The reading itself when every rule holds, else Rejected naming the first broken rule."""
    code = check_device_code(reading.device_code)
    ts = check_timestamp(reading.ts, now, limits, local=reading.local_time)
    for name in ("power_w", *RANGES):
        value = getattr(reading, name)
        if value is None:
            continue
        if not math.isfinite(value):
            raise Rejected("not_finite", f"{name} is {value}, only finite numbers are accepted")
        if name == "power_w":
            negative_ok = limits.allow_negative_power or reading.bidirectional
            low: float | None = None if negative_ok else 0.0
            high: float | None = limits.max_power_w
            if negative_ok and value < -limits.max_power_w:
                raise Rejected("out_of_range", f"power_w {value} below -{limits.max_power_w}")
        else:
            low, high = RANGES[name]
        if (low is not None and value < low) or (high is not None and value > high):
            raise Rejected(
                "out_of_range",
                f"{name} {value} outside {'-inf' if low is None else low}..{high or 'inf'}",
            )
    if reading.seq is not None and not 0 <= reading.seq < 2**63:
        raise Rejected("out_of_range", f"seq {reading.seq} outside 0..2^63")
    if reading.firmware is not None and len(reading.firmware) > 64:
        raise Rejected("out_of_range", "firmware longer than 64 characters")
    if ts == reading.ts and code == reading.device_code:
        return reading
    return msgspec.structs.replace(reading, ts=ts, device_code=code)


def limits_from_settings(settings: Settings) -> Limits:
    """The validation limits every way in applies (MQTT, HTTP, corrections), from settings."""
    return Limits(
        max_power_w=settings.max_power_w, max_future=timedelta(seconds=settings.max_future_s)
    )
