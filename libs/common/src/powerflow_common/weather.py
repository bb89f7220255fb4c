"""Daily mean outdoor temperatures from a Korea Meteorological Administration ASOS CSV (pure).

The KMA's open data portal (data.kma.go.kr, 종관기상관측 ASOS) exports CSV in CP949 (or UTF-8
with a BOM), one row per station and time:

- daily files (일자료): ``지점,지점명,일시,평균기온(°C),최저기온(°C),...`` with ``일시`` a
  date (``2024-01-31``); the daily mean is ``평균기온(°C)``;
- hourly files (시간자료): ``지점,지점명,일시,기온(°C),기온 QC플래그,...`` with ``일시``
  ``2024-01-31 13:00`` in Korean Standard Time; hours are cut into the site's local days and
  averaged (a day needs ``min_hours`` of them).

The API hub's English names (``stnId``, ``tm``, ``avgTa`` daily, ``ta`` hourly) are read too.
An empty temperature (a missing observation) is skipped; anything else that is not a number
in -70..60 °C rejects the file with its line, never a silent guess.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from powerflow_common.errors import InvalidInput

__all__ = ["KST", "WeatherDay", "WeatherRejected", "parse_kma_asos_csv"]

KST = ZoneInfo("Asia/Seoul")
MAX_ROWS = 400_000  # 45 years of hours of one station
MIN_TEMPERATURE_C = -70.0
MAX_TEMPERATURE_C = 60.0
_STATION = ("지점", "stnId", "stn_id")
_TIME = ("일시", "tm")
_DAILY_MEAN = ("평균기온(°C)", "평균기온(℃)", "평균기온", "avgTa")
_HOURLY = ("기온(°C)", "기온(℃)", "기온", "ta")


class WeatherRejected(InvalidInput, ValueError):
    """A weather file that cannot be read: a machine reason and what to do."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class WeatherDay:
    station: str
    day: date
    temperature_mean_c: float
    hours: int  # hourly values averaged (24 for a daily file's mean)


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "cp949"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise WeatherRejected(
        "bad_encoding", "The file is neither UTF-8 nor CP949 (EUC-KR) text: export it again."
    )


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    cleaned = [h.strip().replace(" ", "") for h in header]
    for name in names:
        if name.replace(" ", "") in cleaned:
            return cleaned.index(name.replace(" ", ""))
    return None


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where a KMA ASOS file keeps the station, the time and the temperature."""

    station: int
    time: int
    temperature: int
    daily: bool  # a daily file (평균기온) or an hourly one (기온)


def _layout(header: list[str]) -> _Layout:
    i_station, i_time = _column(header, _STATION), _column(header, _TIME)
    i_daily, i_hourly = _column(header, _DAILY_MEAN), _column(header, _HOURLY)
    i_temp = i_daily if i_daily is not None else i_hourly
    if i_station is None or i_time is None or i_temp is None:
        raise WeatherRejected(
            "not_kma_asos",
            "Not a KMA ASOS CSV: its header needs 지점, 일시 and 평균기온(°C) (daily) or "
            f"기온(°C) (hourly); it has {', '.join(h.strip() for h in header[:8])}.",
        )
    return _Layout(i_station, i_time, i_temp, daily=i_daily is not None)


def _observation(
    row: list[str], line: int, layout: _Layout, tz: ZoneInfo
) -> tuple[str, date, float] | None:
    """A row's station, site-local day and temperature; None for a blank or missing value."""
    if not row or not any(cell.strip() for cell in row):
        return None
    if len(row) <= max(layout.station, layout.time, layout.temperature):
        raise WeatherRejected("short_row", f"Line {line} has too few columns.")
    text = row[layout.temperature].strip()
    if not text:
        return None  # a missing observation
    stamp = row[layout.time].strip()
    try:
        value = float(text)
        when = (
            date.fromisoformat(stamp[:10])
            if layout.daily
            else datetime.fromisoformat(stamp).replace(tzinfo=KST).astimezone(tz).date()
        )
    except (ValueError, OverflowError) as exc:
        raise WeatherRejected(
            "bad_value", f"Line {line}: {row[layout.time]!r} / {text!r} is not a time and a number."
        ) from exc
    if not (MIN_TEMPERATURE_C <= value <= MAX_TEMPERATURE_C) or not 1971 <= when.year <= 2199:
        raise WeatherRejected(
            "out_of_range",
            f"Line {line}: {value} °C on {when} is outside -70..60 °C or 1971..2199.",
        )
    return row[layout.station].strip(), when, value


def _chosen_station(stations: list[str], station: str | None) -> str:
    """``station``, or the file's only one; else WeatherRejected saying which exist."""
    if not stations:
        raise WeatherRejected("no_rows", "The file has no temperature rows.")
    if station is None:
        if len(stations) > 1:
            raise WeatherRejected(
                "several_stations",
                f"The file holds stations {', '.join(sorted(stations))}: choose one (--station).",
            )
        return stations[0]
    if station not in stations:
        raise WeatherRejected(
            "unknown_station",
            f"Station {station} is not in the file (it has {', '.join(sorted(stations))}).",
        )
    return station


def parse_kma_asos_csv(
    data: bytes,
    *,
    site_timezone: str,
    station: str | None = None,
    min_hours: int = 20,
) -> list[WeatherDay]:
    """The file's daily mean temperatures, of one station (``station`` or the only one)."""
    rows = csv.reader(io.StringIO(_decode(data)))
    header = next(rows, None)
    if header is None:
        raise WeatherRejected("empty", "The file is empty.")
    layout = _layout(header)
    tz = ZoneInfo(site_timezone)
    values: dict[str, dict[date, list[float]]] = defaultdict(lambda: defaultdict(list))
    for line, row in enumerate(rows, start=2):
        if line > MAX_ROWS + 1:
            raise WeatherRejected(
                "too_many_rows", f"More than {MAX_ROWS} rows: split the file by years."
            )
        seen = _observation(row, line, layout, tz)
        if seen is not None:
            values[seen[0]][seen[1]].append(seen[2])
    station = _chosen_station(list(values), station)
    out = []
    for day, temps in sorted(values[station].items()):
        if layout.daily:
            out.append(WeatherDay(station, day, temps[-1], 24))
        elif len(temps) >= min_hours:
            out.append(WeatherDay(station, day, sum(temps) / len(temps), len(temps)))
    return out
