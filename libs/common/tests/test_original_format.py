"""The original device format: decoding and validation, without any server."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pf_hypothesis import examples

from powerflow_common.errors import Ignored, Rejected
from powerflow_common.formats import decode_message, rejection_record, topic_matches
from powerflow_common.formats.original import ORIGINAL
from powerflow_common.validation import Limits

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
LIMITS = Limits()
GOOD = {
    "deviceCode": 1234,
    "timestamp": "2023-06-27T14:30:00Z",
    "temp": 25.3,
    "humidity": 55.2,
    "brightness": 650,
    "electric": 1150.5,
}


def decode(payload: bytes | str | dict[str, object], topic: str = "power/measurement"):  # type: ignore[no-untyped-def]
    if isinstance(payload, dict):
        payload = json.dumps(payload)
    if isinstance(payload, str):
        payload = payload.encode()
    return decode_message([ORIGINAL], topic, payload, NOW, LIMITS)


def reason_of(payload: bytes | str | dict[str, object], topic: str = "power/measurement") -> str:
    with pytest.raises(Rejected) as info:
        decode(payload, topic)
    return info.value.reason


def test_original_payload_becomes_a_canonical_reading() -> None:
    [reading] = decode(GOOD)
    assert reading.device_code == "1234"
    assert reading.ts == datetime(2023, 6, 27, 14, 30, tzinfo=UTC)
    assert reading.power_w == 1150.5
    assert reading.temperature_c == 25.3
    assert reading.humidity_pct == 55.2
    assert reading.brightness_lux == 650
    assert reading.energy_wh is None


def test_mac_address_device_code_and_firmware_extras_are_kept() -> None:
    payload = {
        **GOOD,
        "deviceCode": "A4:CF:12:9B:00:01",
        "energy_wh": 1234.5,
        "voltage": 229.8,
        "current": 5.01,
        "seq": 42,
        "fw": "1.0.0",
    }
    [reading] = decode(payload, "power/A4:CF:12:9B:00:01/measurement")
    assert reading.device_code == "A4:CF:12:9B:00:01"
    assert (reading.energy_wh, reading.voltage_v, reading.current_a) == (1234.5, 229.8, 5.01)
    assert (reading.seq, reading.firmware) == (42, "1.0.0")


def test_timestamp_is_kept_to_the_millisecond_in_utc() -> None:
    [reading] = decode({**GOOD, "timestamp": "2024-01-01T09:00:00.123456+09:00"})
    assert reading.ts == datetime(2024, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)


def test_per_device_topic_names_the_device_when_the_payload_does_not() -> None:
    payload = {k: v for k, v in GOOD.items() if k != "deviceCode"}
    [reading] = decode(payload, "power/plug-7/measurement")
    assert reading.device_code == "plug-7"


@pytest.mark.parametrize(
    ("payload", "topic", "reason"),
    [
        (b"this is not json", "power/measurement", "not_json"),
        (b"[1, 2, 3]", "power/measurement", "not_object"),
        (
            {k: v for k, v in GOOD.items() if k != "deviceCode"},
            "power/measurement",
            "missing_device_code",
        ),
        (
            {k: v for k, v in GOOD.items() if k != "timestamp"},
            "power/measurement",
            "missing_timestamp",
        ),
        ({**GOOD, "electric": "high"}, "power/measurement", "wrong_type"),
        (
            b'{"deviceCode":1,"timestamp":"2024-01-01T00:00:00Z","electric":NaN}',
            "power/measurement",
            "not_finite",
        ),
        ({**GOOD, "humidity": 140}, "power/measurement", "out_of_range"),
        ({**GOOD, "timestamp": "2036-06-27T14:30:00Z"}, "power/measurement", "timestamp_in_future"),
        (b"{" + b" " * (1024 * 1024) + b"}", "power/measurement", "too_large"),
        (b'{"deviceCode":"\xff\xfe","timestamp":"x"}', "power/measurement", "invalid_utf8"),
        (b"[" * 5_000 + b"]" * 5_000, "power/measurement", "too_deep"),
        (b'{"x":' + b"[" * 5_000 + b"]" * 5_000 + b"}", "power/measurement", "too_deep"),
        ({**GOOD, "deviceCode": "kitchen plug.2"}, "power/measurement", "invalid_device_code"),
        ({**GOOD, "deviceCode": "other"}, "power/plug-7/measurement", "device_mismatch"),
        ({**GOOD, "timestamp": "yesterday"}, "power/measurement", "bad_timestamp"),
        ({**GOOD, "timestamp": "2019-12-31T23:59:59Z"}, "power/measurement", "timestamp_too_old"),
        ({**GOOD, "electric": -5}, "power/measurement", "out_of_range"),
        ({**GOOD, "electric": 1e9}, "power/measurement", "out_of_range"),
        ({**GOOD, "temp": 126}, "power/measurement", "out_of_range"),
        ({**GOOD, "brightness": -1}, "power/measurement", "out_of_range"),
        (
            b'{"deviceCode":1,"timestamp":"2024-01-01T00:00:00Z","electric":1e999}',
            "power/measurement",
            "not_finite",
        ),
    ],
)
def test_bad_payload_is_rejected_with_its_reason(
    payload: bytes | dict[str, object], topic: str, reason: str
) -> None:
    assert reason_of(payload, topic) == reason


def test_power_ceiling_is_configurable() -> None:
    payload = json.dumps({**GOOD, "electric": 5000}).encode()
    low = Limits(max_power_w=1000)
    with pytest.raises(Rejected):
        decode_message([ORIGINAL], "power/measurement", payload, NOW, low)
    assert decode_message([ORIGINAL], "power/measurement", payload, NOW, LIMITS)


def test_timestamp_a_little_ahead_is_accepted_but_not_beyond_five_minutes() -> None:
    ahead = (NOW + timedelta(minutes=4)).isoformat()
    assert decode({**GOOD, "timestamp": ahead})
    assert reason_of({**GOOD, "timestamp": (NOW + timedelta(minutes=6)).isoformat()}) == (
        "timestamp_in_future"
    )


def test_topic_no_format_claims_is_ignored_not_dead_lettered() -> None:
    with pytest.raises(Ignored) as info:
        decode_message([ORIGINAL], "other/topic", b"{}", NOW, LIMITS)
    assert info.value.reason == "unclaimed_topic"


def test_rejection_record_keeps_at_most_64_kib_of_the_payload_and_its_digest() -> None:
    payload = b"x" * (100 * 1024)
    record = rejection_record(
        Rejected("too_large", "big"), topic="power/measurement", payload=payload, received_at=NOW
    )
    assert record.size == len(payload)
    assert len(record.payload) == 64 * 1024
    assert record.truncated
    assert len(record.sha256) == 64


@pytest.mark.parametrize(
    ("pattern", "topic", "matches"),
    [
        ("power/measurement", "power/measurement", True),
        ("power/+/measurement", "power/abc/measurement", True),
        ("power/+/measurement", "power/measurement", False),
        ("power/#", "power/a/b/c", True),
        ("power/+", "power/a/b", False),
    ],
)
def test_topic_wildcards_match_like_mqtt(pattern: str, topic: str, matches: bool) -> None:
    assert topic_matches(pattern, topic) is matches


@settings(max_examples=examples(3), deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_at_all_give_readings_or_a_rejection(payload: bytes) -> None:
    try:
        readings = decode(payload)
    except Rejected as exc:
        assert re.fullmatch(r"[a-z0-9_]+", exc.reason)
    else:
        assert readings


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=examples(3), deadline=None)
@given(st.dictionaries(st.sampled_from([*list(GOOD), "seq", "fw", "x"]), json_values))
def test_any_json_object_gives_valid_readings_or_a_rejection(body: dict[str, object]) -> None:
    try:
        readings = decode(json.dumps(body))
    except Rejected:
        return
    for reading in readings:
        assert reading.ts.tzinfo is not None


def test_the_legacy_topic_is_named_once_and_is_the_formats_shared_topic() -> None:
    from powerflow_common.admission import LEGACY_TOPIC as ADMISSION_LEGACY_TOPIC
    from powerflow_common.formats.original import LEGACY_TOPIC

    assert LEGACY_TOPIC == ADMISSION_LEGACY_TOPIC == "power/measurement"
    assert ORIGINAL.claims(LEGACY_TOPIC)
