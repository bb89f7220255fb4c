"""The pure parts of the aggregator's handler: lock names, rows, follow-on hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from powerflow_aggregator.rollup import follow_on_hour, lock_name
from powerflow_aggregator.rows import FLAG_NO_EMISSION_FACTOR, is_empty, stat_row
from powerflow_common.carbon import EmissionFactor
from powerflow_common.energy import HourlyEnergy

H10 = datetime(2024, 6, 3, 10, tzinfo=UTC)
GAP = timedelta(seconds=60)
ORIGINAL = EmissionFactor(
    id=1,
    factor_set="original",
    region="KR",
    valid_from=None,
    valid_to=None,
    kg_co2e_per_kwh=0.478,
    source="powerflow prototype",
)


def hour(**fields: object) -> HourlyEnergy:
    values: dict[str, object] = {
        "hour_start": H10,
        "energy_kwh": 0.0,
        "export_kwh": 0.0,
        "unallocated_kwh": 0.0,
        "unallocated_export_kwh": 0.0,
        "coverage": 0.0,
        "samples": 0,
        "power_avg_w": None,
        "power_min_w": None,
        "power_max_w": None,
        "temperature_avg_c": None,
        "humidity_avg_pct": None,
        "brightness_avg_lux": None,
        "source": None,
        "flags": (),
    }
    values.update(fields)
    return HourlyEnergy(**values)  # type: ignore[arg-type]


def test_lock_names_fit_mysqls_64_characters_and_differ_per_bucket() -> None:
    long_db = "x" * 64
    names = {
        lock_name(db, device, H10 + timedelta(hours=h))
        for db in ("powerflow", long_db)
        for device in (1, 2_000_000_000)
        for h in (0, 1)
    }
    assert len(names) == 8
    assert all(len(n) <= 64 for n in names)
    assert lock_name("powerflow", 7, H10) == "pf:powerflow:7:2024060310"


def test_co2_covers_allocated_and_unallocated_energy_and_names_its_factor() -> None:
    row = stat_row(
        hour(energy_kwh=1.0, unallocated_kwh=0.5, samples=3, source="counter"),
        device_id=7,
        factor=ORIGINAL,
        factor_set="original",
        computed_at=H10,
    )
    assert row["co2_kg"] == pytest.approx(1.5 * 0.478)
    assert row["emission_factor_id"] == 1
    assert row["factor_set"] == "original"
    assert row["flags"] is None


def test_an_hour_without_a_factor_has_no_co2_and_says_so() -> None:
    row = stat_row(
        hour(energy_kwh=1.0, samples=3, flags=("counter_reset",)),
        device_id=7,
        factor=None,
        factor_set="uk-desnz",
        computed_at=H10,
    )
    assert row["co2_kg"] == 0.0
    assert row["emission_factor_id"] is None
    assert row["flags"] == f"counter_reset,{FLAG_NO_EMISSION_FACTOR}"


def test_an_hour_with_no_reading_near_it_is_empty() -> None:
    assert is_empty(hour())
    assert not is_empty(hour(samples=1, source="power"))
    assert not is_empty(hour(unallocated_kwh=0.2))


def test_the_hour_after_a_counter_gap_is_recomputed_too() -> None:
    last = H10 + timedelta(minutes=30)
    assert follow_on_hour(H10, last, H10 + timedelta(hours=2, minutes=5), GAP) == H10 + timedelta(
        hours=2
    )
    # Within max_gap the readings near the boundary already touch the next hour.
    assert follow_on_hour(H10, last, last + GAP, GAP) is None
    # A gap that ends inside the same hour changes nothing elsewhere.
    assert follow_on_hour(H10, last, last + timedelta(minutes=20), GAP) is None
    assert follow_on_hour(H10, last, None, GAP) is None
