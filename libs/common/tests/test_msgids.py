"""Content-derived message ids: a retry is recognised, different content never is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from powerflow_common.msgids import (
    READINGS_ID_PREFIX,
    canonical_reading,
    readings_msg_id,
    rejection_msg_id,
)
from powerflow_common.wire import Reading

T0 = datetime(2026, 5, 1, 10, 0, 0, tzinfo=UTC)

floats = st.floats(allow_nan=False, allow_infinity=False, width=32)
optional_float = st.none() | floats

readings = st.builds(
    Reading,
    device_code=st.from_regex(r"[A-Za-z0-9_:-]{1,12}", fullmatch=True),
    ts=st.integers(0, 10**9).map(lambda ms: T0 + timedelta(milliseconds=ms)),
    power_w=optional_float,
    energy_wh=optional_float,
    energy_export_wh=optional_float,
    voltage_v=optional_float,
    current_a=optional_float,
    temperature_c=optional_float,
    humidity_pct=optional_float,
    brightness_lux=optional_float,
    seq=st.none() | st.integers(0, 2**31),
    firmware=st.none() | st.text(max_size=8),
    local_time=st.booleans(),
    payload_format=st.sampled_from(["original", "esphome", "tasmota", "http"]),
    bidirectional=st.booleans(),
)

# One different value per field, whatever the reading holds: the "any one field" of the rule.
FIELD_CHANGES: dict[str, Any] = {
    "device_code": lambda v: v + "x",
    "ts": lambda v: v + timedelta(milliseconds=1),
    "seq": lambda v: 0 if v is None else v + 1,
    "firmware": lambda v: "" if v is None else v + "x",
    "local_time": lambda v: not v,
    "payload_format": lambda v: v + "x",
    "bidirectional": lambda v: not v,
    "topic": lambda v: v + "/x",
}
for _name in (
    "power_w",
    "energy_wh",
    "energy_export_wh",
    "voltage_v",
    "current_a",
    "temperature_c",
    "humidity_pct",
    "brightness_lux",
):
    FIELD_CHANGES[_name] = lambda v: 1.5 if v is None else (v + 1.0 if abs(v) < 1e6 else v / 2)


def test_every_field_of_reading_is_covered_by_the_id() -> None:
    # A new field in Reading must be added here, or a change of it could go unnoticed.
    assert set(FIELD_CHANGES) == set(Reading.__struct_fields__)


def test_esphome_power_and_energy_of_one_second_get_different_ids() -> None:
    # The bug this module fixes: two one-quantity messages of one (device, ts).
    power = Reading(device_code="esp-1", ts=T0, power_w=120.0, payload_format="esphome")
    energy = Reading(device_code="esp-1", ts=T0, energy_wh=5000.0, payload_format="esphome")
    assert readings_msg_id([power]) != readings_msg_id([energy])
    # Hand-computed: the canonical bytes are the reading's JSON with defaults left out.
    assert canonical_reading(power) == (
        b'{"device_code":"esp-1","ts":"2026-05-01T10:00:00Z","power_w":120.0,'
        b'"payload_format":"esphome"}'
    )
    assert readings_msg_id([power]).startswith(READINGS_ID_PREFIX)


@settings(deadline=None)
@given(batch=st.lists(readings, min_size=1, max_size=20), data=st.data())
def test_same_readings_in_any_order_get_the_same_id(batch: list[Reading], data: Any) -> None:
    shuffled = data.draw(st.permutations(batch))
    assert readings_msg_id(shuffled) == readings_msg_id(batch)
    # Decoded from the wire again (what a retry after a crash re-batches): still the same.
    again = msgspec.json.decode(msgspec.json.encode(batch), type=list[Reading])
    assert readings_msg_id(again) == readings_msg_id(batch)


@settings(deadline=None)
@given(
    batch=st.lists(readings, min_size=1, max_size=10),
    field=st.sampled_from(sorted(FIELD_CHANGES)),
    data=st.data(),
)
def test_any_one_field_changed_gives_a_different_id(
    batch: list[Reading], field: str, data: Any
) -> None:
    index = data.draw(st.integers(0, len(batch) - 1))
    original = batch[index]
    changed = msgspec.structs.replace(
        original, **{field: FIELD_CHANGES[field](getattr(original, field))}
    )
    assert changed != original
    other = [*batch[:index], changed, *batch[index + 1 :]]
    assert readings_msg_id(other) != readings_msg_id(batch)


@settings(deadline=None)
@given(batch=st.lists(readings, min_size=1, max_size=10), extra=readings)
def test_a_reading_added_or_repeated_gives_a_different_id(
    batch: list[Reading], extra: Reading
) -> None:
    assert readings_msg_id([*batch, extra]) != readings_msg_id(batch)
    assert readings_msg_id([*batch, batch[0]]) != readings_msg_id(batch)


@settings(deadline=None)
@given(topic=st.text(max_size=20), payload=st.binary(max_size=40), reason=st.text(max_size=10))
def test_rejection_id_covers_topic_payload_and_reason(
    topic: str, payload: bytes, reason: str
) -> None:
    same = rejection_msg_id(topic, payload, reason)
    assert same == rejection_msg_id(topic, payload, reason)
    assert rejection_msg_id(topic + "x", payload, reason) != same
    assert rejection_msg_id(topic, payload + b"x", reason) != same
    assert rejection_msg_id(topic, payload, reason + "x") != same
    # Moving bytes between the parts is a different message too.
    if topic:
        assert rejection_msg_id(topic[:-1], topic[-1].encode() + payload, reason) != same
