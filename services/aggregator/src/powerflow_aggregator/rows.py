"""The rows of hourly_stats and quarter_hour_stats, built from a computed period (pure).

Shared by the hour's recompute (rollup) and its quarters (quarter_hour), which each import
this module and never each other.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from powerflow_common.carbon import EmissionFactor, co2_kg
from powerflow_common.energy import HourlyEnergy

FLAG_NO_EMISSION_FACTOR = "no_emission_factor"


def stat_row(
    result: HourlyEnergy,
    *,
    device_id: int,
    factor: EmissionFactor | None,
    factor_set: str,
    computed_at: datetime,
) -> dict[str, Any]:
    """The hourly_stats row of one computed hour; co2_kg covers allocated and unallocated kWh."""
    flags = set(result.flags)
    if factor is None:
        flags.add(FLAG_NO_EMISSION_FACTOR)
    # Unallocated energy was consumed (its timing is unknown), so it emits too.
    import_kwh = result.energy_kwh + result.unallocated_kwh
    return {
        "device_id": device_id,
        "hour_start": result.hour_start,
        "samples": result.samples,
        "coverage": result.coverage,
        "energy_kwh": result.energy_kwh,
        "export_kwh": result.export_kwh,
        "unallocated_kwh": result.unallocated_kwh,
        "unallocated_export_kwh": result.unallocated_export_kwh,
        "power_avg_w": result.power_avg_w,
        "power_min_w": result.power_min_w,
        "power_max_w": result.power_max_w,
        "temperature_avg_c": result.temperature_avg_c,
        "humidity_avg_pct": result.humidity_avg_pct,
        "brightness_avg_lux": result.brightness_avg_lux,
        "co2_kg": 0.0 if factor is None else co2_kg(import_kwh, factor),
        "emission_factor_id": None if factor is None else factor.id,
        "factor_set": factor_set,
        "energy_source": result.source,
        "flags": ",".join(sorted(flags)) or None,
        "computed_at": computed_at,
    }


def is_empty(result: HourlyEnergy) -> bool:
    """True when no reading is near the hour: the hour gets no row."""
    return (
        result.samples == 0
        and result.source is None
        and result.coverage == 0
        and result.energy_kwh == result.export_kwh == 0
        and result.unallocated_kwh == result.unallocated_export_kwh == 0
    )


def restated_co2(
    energy_kwh: float,
    unallocated_kwh: float,
    flags: str | None,
    factor: EmissionFactor | None,
    factor_set: str,
    computed_at: datetime,
) -> dict[str, Any]:
    """The CO2 columns of a stored row (hour or quarter) under ``factor``, from its stored kWh.

    As stat_row: unallocated energy was consumed too, so it emits; the other flags stay.
    """
    kept = set((flags or "").split(",")) - {"", FLAG_NO_EMISSION_FACTOR}
    if factor is None:
        kept.add(FLAG_NO_EMISSION_FACTOR)
    return {
        "co2_kg": 0.0 if factor is None else co2_kg(energy_kwh + unallocated_kwh, factor),
        "emission_factor_id": None if factor is None else factor.id,
        "factor_set": factor_set,
        "flags": ",".join(sorted(kept)) or None,
        "computed_at": computed_at,
    }
