"""A small known data set for the report's pure tests (facts, grounding, labels, rendering).

Three local days in Seoul: a main meter at 1 kWh an hour (0.5 at night), one 0.2 hour, one 3.0
peak and one gap with 0.6 kWh unallocated, and a sub-meter at 0.2 kWh an hour.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from powerflow_common.queries import ScopeDevice
from powerflow_reporter.facts import FactInputs, FactorInfo, HourRow

__all__ = ["END", "FACTOR", "MAIN", "SEOUL", "START", "SUB", "known_inputs"]

SEOUL = ZoneInfo("Asia/Seoul")
START = datetime(2026, 3, 6, tzinfo=SEOUL).astimezone(UTC)  # a Friday, local midnight
END = START + timedelta(days=3)
FACTOR = FactorInfo(
    id=1,
    factor_set="original",
    region="KR",
    kg_co2e_per_kwh=0.478,
    source="powerflow prototype",
    method="location",
)
MAIN = ScopeDevice(1, "main-1", 1, "main", name="Main meter", location="basement")
SUB = ScopeDevice(2, "sub-1", 1, "sub", name="Plug", location="office")  # not counted


def _main_kwh(local: datetime) -> tuple[float, float, float]:
    """(energy, unallocated, coverage) of the main meter in a local hour (see the module doc)."""
    if local == datetime(2026, 3, 6, 3, tzinfo=SEOUL):
        return 0.2, 0.0, 1.0
    if local == datetime(2026, 3, 7, 14, tzinfo=SEOUL):
        return 3.0, 0.0, 1.0
    if local == datetime(2026, 3, 8, 10, tzinfo=SEOUL):
        return 1.0, 0.6, 0.4
    return (0.5 if local.hour < 5 else 1.0), 0.0, 1.0


def known_inputs(contracted_kwh: float = 0.0) -> FactInputs:
    """72 hours: the main meter at 1 kWh/h, 0.5 at night, one 0.2 hour, one 3.0 peak, one gap."""
    rows: list[HourRow] = []
    previous: list[HourRow] = []
    for i in range(72):
        hour = START + timedelta(hours=i)
        local = hour.astimezone(SEOUL)
        energy, unallocated, coverage = _main_kwh(local)
        rows.append(
            HourRow(
                device_id=1,
                hour_start=hour,
                energy_kwh=energy,
                unallocated_kwh=unallocated,
                coverage=coverage,
                co2_kg=(energy + unallocated) * 0.478,
                emission_factor_id=1,
                power_max_w=energy * 1500,
                temperature_c=10.0 + local.day,
                brightness_lux=800.0 if 10 <= local.hour < 16 else 0.0,
            )
        )
        rows.append(HourRow(2, hour, 0.2, 0.0, 1.0, 0.2 * 0.478, 1))
        previous.append(HourRow(1, hour - timedelta(days=3), 0.8, 0.0, 1.0, 0.8 * 0.478, 1))
    return FactInputs(
        scope="site",
        scope_label="HQ",
        tz="Asia/Seoul",
        start_utc=START,
        end_utc=END,
        devices=[MAIN, SUB],
        counted_ids=frozenset({MAIN.id}),
        rows=rows,
        previous_rows=previous,
        factors=[FACTOR],
        floor_area_m2=100.0,
        contracted_kwh_by_site={1: contracted_kwh},
    )
