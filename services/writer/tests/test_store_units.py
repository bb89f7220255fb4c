"""The writer's pure parts: merging readings that share a key."""

from __future__ import annotations

from datetime import UTC, datetime

from powerflow_common.wire import Reading
from powerflow_writer.store import merge_same_key

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
