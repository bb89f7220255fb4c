"""The device code rule: exact, except MAC addresses, which have one canonical spelling."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerflow_common.errors import Rejected
from powerflow_common.formats import decode_message
from powerflow_common.formats.original import ORIGINAL
from powerflow_common.validation import (
    DEVICE_CODE_PATTERN,
    Limits,
    canonical_device_code,
    check_device_code,
    validate,
)
from powerflow_common.wire import Reading

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
octets = st.lists(st.integers(0, 255), min_size=6, max_size=6)
codes = st.from_regex(DEVICE_CODE_PATTERN, fullmatch=True)


def spell(values: list[int], separator: str, upper: bool) -> str:
    text = separator.join(f"{v:02x}" for v in values)
    return text.upper() if upper else text


def test_a_mac_in_lower_case_with_dashes_is_upper_case_with_colons() -> None:
    assert canonical_device_code("a4-cf-12-9b-00-01") == "A4:CF:12:9B:00:01"
    assert canonical_device_code("a4:cf:12:9b:00:01") == "A4:CF:12:9B:00:01"


def test_codes_that_are_not_mac_addresses_stay_exactly_as_sent() -> None:
    # Twelve bare hex digits are also a number: a numeric code must stay what was enrolled.
    for code in ("Kitchen", "kitchen", "1001", "a4cf129b0001", "a4:cf-12-9b-00-01", "ab:cd"):
        assert canonical_device_code(code) == code


@settings(deadline=None)
@given(octets, st.sampled_from(":-"), st.booleans(), st.sampled_from(":-"), st.booleans())
def test_every_spelling_of_one_mac_is_one_code(
    values: list[int], sep_a: str, upper_a: bool, sep_b: str, upper_b: bool
) -> None:
    a = canonical_device_code(spell(values, sep_a, upper_a))
    b = canonical_device_code(spell(values, sep_b, upper_b))
    assert a == b == spell(values, ":", True)


@settings(deadline=None)
@given(codes)
def test_the_rule_is_idempotent_and_keeps_codes_valid(code: str) -> None:
    canonical = canonical_device_code(code)
    assert canonical_device_code(canonical) == canonical
    assert DEVICE_CODE_PATTERN.fullmatch(canonical)
    # Only case and separators may change, never the length or the hex digits.
    assert canonical.upper().replace("-", ":") == code.upper().replace("-", ":")


def test_check_device_code_returns_the_canonical_code_and_still_rejects_bad_ones() -> None:
    assert check_device_code("a4-cf-12-9b-00-01") == "A4:CF:12:9B:00:01"
    with pytest.raises(Rejected) as caught:
        check_device_code("a b")
    assert caught.value.reason == "invalid_device_code"


def test_validated_readings_carry_the_canonical_code() -> None:
    reading = Reading(device_code="a4-cf-12-9b-00-01", ts=NOW, power_w=1.0)
    assert validate(reading, NOW, Limits()).device_code == "A4:CF:12:9B:00:01"


def test_the_original_format_accepts_one_mac_spelled_two_ways_in_topic_and_payload() -> None:
    payload = b'{"deviceCode":"A4:CF:12:9B:00:01","timestamp":"2026-11-29T08:59:00Z","electric":5}'
    [reading] = decode_message(
        [ORIGINAL], "power/a4-cf-12-9b-00-01/measurement", payload, NOW, Limits()
    )
    assert reading.device_code == "A4:CF:12:9B:00:01"
