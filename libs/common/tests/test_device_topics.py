"""Each format's device topics: exactly the device's own, never another format's or device's."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from powerflow_common.enrolment import (
    LEGACY_TOPIC,
    RESERVED_CODES,
    device_username,
    enrolment_code,
    new_password,
    payload_formats,
    publish_topics,
    topic_owner,
)
from powerflow_common.errors import EnrolmentError, Rejected
from powerflow_common.formats import (
    MAX_DEVICES_PER_MESSAGE,
    PayloadFormat,
    decode_message,
    find_format,
    owns,
)
from powerflow_common.formats.registry import FORMATS
from powerflow_common.validation import (
    DEVICE_CODE_PATTERN,
    Limits,
    canonical_device_code,
    check_device_code,
)

ALL = tuple(FORMATS.values())
codes = st.from_regex(DEVICE_CODE_PATTERN, fullmatch=True)
# Levels that mean something in some format's topics, and a plain one: what a device could
# put where its grant has a ``+``, and codes a person could enrol.
TOPIC_WORDS = (
    "SENSOR", "STATE", "LWT", "switch:0", "em1:1", "em1data:0", "pm1:2", "P1", "E2", "T1",
    "Vrms", "power", "energy", "measurement", "state", "status", "rpc", "sensor", "events",
    "tele", "emon", "stat", "cmnd", "online", "x",
)  # fmt: skip


def concrete_topics(grant: str) -> list[str]:
    """Every topic a grant covers, with each ``+`` one of TOPIC_WORDS."""
    levels = grant.split("/")
    slots = [TOPIC_WORDS if level == "+" else (level,) for level in levels]
    return ["/".join(choice) for choice in itertools.product(*slots)]


def foreign_claims(code: str) -> list[tuple[str, str, str]]:
    """(granting format, topic, claiming format) where a grant of ``code`` reaches into
    another format's topics or another device's."""
    found = []
    for fmt in ALL:
        for grant in fmt.device_topics(code):
            for topic in concrete_topics(grant):
                claimer = find_format(ALL, topic)
                if claimer is not None and (claimer is not fmt or topic_owner(topic) != code):
                    found.append((fmt.name, topic, claimer.name))
    return found


@pytest.mark.parametrize(
    ("name", "topics"),
    [
        ("original", ("power/dev1/measurement", "power/dev1/status")),
        ("tasmota", ("tele/dev1/+",)),
        ("shelly", ("dev1/status/+", "dev1/events/rpc", "dev1/online")),
        ("esphome", ("dev1/sensor/+/state", "dev1/status")),
        ("emonhub", ("emon/dev1", "emon/dev1/+")),
    ],
)
def test_each_format_grants_its_own_topics(name: str, topics: tuple[str, ...]) -> None:
    assert FORMATS[name].device_topics("dev1") == topics


@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
def test_the_code_is_one_level_and_no_grant_reaches_deeper_than_the_format(
    fmt: PayloadFormat,
) -> None:
    for grant in fmt.device_topics("A4:CF:12:9B:00:01"):
        levels = grant.split("/")
        assert levels.count("A4:CF:12:9B:00:01") == 1
        assert "#" not in levels  # one level deep at most: nothing under another's topics


@given(codes)
def test_a_valid_code_can_never_be_a_wildcard_or_span_levels(code: str) -> None:
    assert not set(code) & {"/", "+", "#", "\x00"}
    assert not code.startswith("$")  # $SYS and $CONTROL are the broker's


@pytest.mark.parametrize("bad", ["a/b", "a+", "#", "+", "dev/#", "$SYS", "a b", ""])
def test_codes_with_topic_syntax_are_refused(bad: str) -> None:
    with pytest.raises(Rejected):
        check_device_code(bad)
    with pytest.raises(EnrolmentError) as caught:
        enrolment_code(bad)
    assert caught.value.reason == "invalid_device_code"


@given(codes)
def test_no_enrollable_code_reaches_another_formats_or_devices_topics(code: str) -> None:
    if code in RESERVED_CODES:
        return
    assert foreign_claims(code) == []


@pytest.mark.parametrize("code", TOPIC_WORDS)
def test_topic_words_as_codes_are_safe_unless_reserved(code: str) -> None:
    assert (foreign_claims(code) != []) == (code in RESERVED_CODES)


@pytest.mark.parametrize("code", sorted(RESERVED_CODES))
def test_reserved_codes_cannot_be_enrolled(code: str) -> None:
    with pytest.raises(EnrolmentError) as caught:
        enrolment_code(code)
    assert caught.value.reason == "reserved_code"


def test_publish_topics_add_the_legacy_topic_only_when_asked() -> None:
    both = payload_formats(["original", "tasmota", "original"])
    assert [f.name for f in both] == ["original", "tasmota"]
    assert publish_topics("m1", both, legacy=False) == (
        "power/m1/measurement",
        "power/m1/status",
        "tele/m1/+",
    )
    assert publish_topics("m1", both, legacy=True)[-1] == LEGACY_TOPIC
    assert [f.name for f in payload_formats([])] == ["original"]
    with pytest.raises(EnrolmentError) as caught:
        payload_formats(["original", "zigbee"])
    assert caught.value.reason == "unknown_format"


def test_the_owner_of_a_topic_is_the_code_its_grant_names() -> None:
    assert topic_owner("power/m1/measurement") == "m1"
    assert topic_owner("tele/plug-7/SENSOR") == "plug-7"
    assert topic_owner("shelly1/status/switch:0") == "shelly1"
    assert topic_owner("shelly1/events/rpc") == "shelly1"
    assert topic_owner("esp1/sensor/power/state") == "esp1"
    assert topic_owner("emon/node5") == "node5"
    assert topic_owner("emon/node5/P1") == "node5"
    assert topic_owner(LEGACY_TOPIC) is None
    assert topic_owner("homeassistant/sensor/x/config") is None


def test_usernames_and_passwords() -> None:
    assert device_username("A4:CF:12:9B:00:01") == "device-A4:CF:12:9B:00:01"
    assert enrolment_code("a4-cf-12-9b-00-01") == "A4:CF:12:9B:00:01"
    first, second = new_password(), new_password()
    assert first != second
    assert len(first) == 32  # 192 bits, URL-safe: fits Tasmota and needs no quoting
    assert set(first) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


# --- which codes a device's topics may carry (ingest checks every message) ----------------

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _decode(topic: str, body: object) -> list[str]:
    payload = json.dumps(body).encode()
    return [r.device_code for r in decode_message(ALL, topic, payload, NOW, Limits())]


def test_a_multi_channel_device_reports_its_own_channels() -> None:
    # Hand-checked: Tasmota's Power array [100, 5] on meter's topic is meter-1 and meter-2.
    body = {"Time": "2026-11-29T20:59:50", "ENERGY": {"Power": [100, 5]}}
    assert _decode("tele/meter/SENSOR", body) == ["meter-1", "meter-2"]
    assert owns("meter", "meter-2") and owns("meter", "meter")
    assert not owns("meter", "meter2") and not owns("meter", "meters-1")


def test_a_channel_suffix_never_makes_another_devices_mac_code() -> None:
    # A Shelly enrolled as a4-cf-12-9b-00 publishing component 01: the decoder builds
    # a4-cf-12-9b-00-01, which is the MAC-like code of a real device (A4:CF:12:9B:00:01).
    status = {"id": 1, "apower": 1000.0}
    with pytest.raises(Rejected) as refused:
        _decode("a4-cf-12-9b-00/status/switch:01", status)
    assert refused.value.reason == "device_not_owned"


def test_one_message_naming_too_many_devices_is_refused() -> None:
    body = {"Time": "2026-11-29T20:59:50", "ENERGY": {"Power": list(range(33))}}
    with pytest.raises(Rejected) as refused:
        _decode("tele/meter/SENSOR", body)
    assert refused.value.reason == "too_many_devices"
    body["ENERGY"]["Power"] = list(range(MAX_DEVICES_PER_MESSAGE))  # type: ignore[index]
    assert len(_decode("tele/meter/SENSOR", body)) == MAX_DEVICES_PER_MESSAGE


@given(owner=codes, other=codes, channel=st.integers(0, 999))
def test_a_device_owns_its_code_and_channels_and_no_other_code(
    owner: str, other: str, channel: int
) -> None:
    assert owns(owner, canonical_device_code(owner))
    assert owns(owner, f"{owner}-{channel}")
    if not other.startswith(f"{owner}-") and other != canonical_device_code(owner):
        assert not owns(owner, other)
