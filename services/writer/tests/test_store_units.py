"""The writer's pure parts: merging readings that share a key."""

from __future__ import annotations

from datetime import UTC, datetime

from powerflow_common.wire import Reading
from powerflow_writer.store import (
    CONFLICTS_LOGGED_PER_BATCH,
    Conflict,
    Conflicts,
    canonical_codes,
    merge_same_key,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_readings_with_one_key_merge_and_the_first_value_wins() -> None:
    merged = merge_same_key(
        [
            Reading(device_code="a", ts=T0, power_w=10.0),
            Reading(device_code="a", ts=T0, power_w=99.0, temperature_c=21.5),
            Reading(device_code="b", ts=T0, power_w=1.0),
        ]
    )
    assert len(merged) == 2
    a = next(r for r in merged if r.device_code == "a")
    assert (a.power_w, a.temperature_c) == (10.0, 21.5)


def test_a_second_different_value_in_one_batch_keeps_the_first_and_is_a_conflict() -> None:
    conflicts = Conflicts()
    merged = merge_same_key(
        [
            Reading(device_code="a", ts=T0, power_w=10.0, energy_wh=5.0),
            Reading(device_code="a", ts=T0, power_w=12.5, energy_wh=5.0),
        ],
        conflicts,
    )
    assert [r.power_w for r in merged] == [10.0]
    assert conflicts.count == 1
    assert conflicts.samples == [Conflict("a", T0, "power_w", 10.0, 12.5)]


def test_conflicts_are_all_counted_but_only_the_first_20_columns_kept_for_the_log() -> None:
    conflicts = Conflicts()
    for i in range(30):
        conflicts.add([Conflict("a", T0, "power_w", 1.0, float(i + 2))])
    assert conflicts.count == 30
    assert len(conflicts.samples) == CONFLICTS_LOGGED_PER_BATCH == 20
    assert conflicts.unlogged == 10


def test_mac_codes_are_made_canonical_before_readings_are_merged() -> None:
    merged = merge_same_key(
        canonical_codes(
            [
                Reading(device_code="a4-cf-12-9b-00-01", ts=T0, power_w=10.0),
                Reading(device_code="A4:CF:12:9B:00:01", ts=T0, energy_wh=3.0),
            ]
        )
    )
    assert [(r.device_code, r.power_w, r.energy_wh) for r in merged] == [
        ("A4:CF:12:9B:00:01", 10.0, 3.0)
    ]
