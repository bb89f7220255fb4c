"""The ranges an outside value (an API parameter, a report request) must fall in.

A value outside them cannot name anything powerflow holds, and passing it on breaks something
further down: SQL refuses an OFFSET beyond 2**64, and datetime arithmetic overflows near
year 1 and year 9999 (a local day or a UTC offset away is enough). Checking at the edge turns
those into a clear error that names the value and the bound. Pure: no I/O, no settings.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from powerflow_common.errors import InvalidInput

__all__ = [
    "EARLIEST_DATE",
    "EARLIEST_TIME",
    "LATEST_DATE",
    "LATEST_TIME",
    "MAX_CURSOR_CHARS",
    "MAX_DEVICE_CODE_CHARS",
    "MAX_OFFSET",
    "MAX_REPORT_ID_CHARS",
    "MAX_ROW_ID",
    "MIN_ROW_ID",
    "OutOfBounds",
    "date_in_bounds",
    "utc_in_bounds",
]

# Ids of sites, devices, keys and factors are signed 32-bit INT columns counting from 1.
MIN_ROW_ID = 1
MAX_ROW_ID = 2**31 - 1
# Offset paging makes the database read and skip every row before the page; past a million
# rows a client should narrow its query instead (and no organisation has a million reports).
MAX_OFFSET = 1_000_000
# devices.code is VARCHAR(64), and the canonical reading allows at most 64 characters.
MAX_DEVICE_CODE_CHARS = 64
# esg_reports.id is VARCHAR(36): a UUID (uuid4 on request, uuid5 for a scheduled report).
MAX_REPORT_ID_CHARS = 36
# An encoded readings cursor is about 150 characters; anything much longer is not ours.
MAX_CURSOR_CHARS = 512
# No electricity reading we store predates Unix time, and a meter's data does not run
# past 2200. Both stay centuries away from year 1 and 9999, so a day or a UTC offset of
# arithmetic on a bounded value can never overflow.
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2200, 1, 1, tzinfo=UTC)
EARLIEST_DATE = EARLIEST_TIME.date()
LATEST_DATE = LATEST_TIME.date()


class OutOfBounds(InvalidInput, ValueError):
    """``name`` is outside its range; the message names the value, the bound and the fix."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


def utc_in_bounds(name: str, ts: datetime) -> datetime:
    """``ts`` as aware UTC (naive means UTC) when in [EARLIEST_TIME, LATEST_TIME), else raise.

    Raises OutOfBounds also where the conversion itself would overflow (year 1 at +05:00).
    """
    try:
        utc = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST_TIME <= utc < LATEST_TIME:
        raise OutOfBounds(
            name,
            f"{ts.isoformat()} is out of range; use a time from "
            f"{_iso(EARLIEST_TIME)} up to (not including) {_iso(LATEST_TIME)}",
        )
    return utc


def date_in_bounds(name: str, day: date) -> date:
    """``day`` when in [EARLIEST_DATE, LATEST_DATE), else raise OutOfBounds."""
    if not EARLIEST_DATE <= day < LATEST_DATE:
        raise OutOfBounds(
            name,
            f"{day.isoformat()} is out of range; use a day from {EARLIEST_DATE.isoformat()} "
            f"up to (not including) {LATEST_DATE.isoformat()}",
        )
    return day


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")
