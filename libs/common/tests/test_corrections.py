"""The pure rules of operator corrections: which columns, which values, which hours, which id."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerflow_common.corrections import (
    CORRECTABLE_FIELDS,
    NOT_CORRECTABLE,
    check_values,
    parse_assignments,
    persisted_message,
    stored_ts,
)
from powerflow_common.energy import touched_hours
from powerflow_common.errors import CorrectionRefused, Rejected
from powerflow_common.validation import EARLIEST_TS, Limits, validate
from powerflow_common.wire import MEASUREMENT_FIELDS, Bucket, Reading, persisted_decoder

LIMITS = Limits()
H = datetime(2026, 11, 29, 7, tzinfo=UTC)


def test_every_measurement_but_seq_and_firmware_may_be_corrected() -> None:
    assert set(CORRECTABLE_FIELDS) | set(NOT_CORRECTABLE) == set(MEASUREMENT_FIELDS)
    assert set(NOT_CORRECTABLE) == {"seq", "firmware"}
    with pytest.raises(CorrectionRefused) as refused:
        check_values({"seq": 3.0}, bidirectional=False, limits=LIMITS)
    assert refused.value.reason == "column_not_correctable"
    with pytest.raises(CorrectionRefused) as unknown:
        check_values({"device_id": 3.0}, bidirectional=False, limits=LIMITS)
    assert unknown.value.reason == "unknown_column" and "power_w" in unknown.value.detail


def test_a_value_cannot_be_emptied_because_a_replay_would_refill_it() -> None:
    with pytest.raises(CorrectionRefused) as refused:
        check_values({"power_w": None}, bidirectional=False, limits=LIMITS)
    assert refused.value.reason == "null_value"
    with pytest.raises(CorrectionRefused) as empty:
        check_values({}, bidirectional=False, limits=LIMITS)
    assert empty.value.reason == "nothing_to_correct"


def test_values_obey_ingest_limits_negative_power_only_on_bidirectional_meters() -> None:
    assert check_values(
        {"power_w": 1600, "voltage_v": 229.5}, bidirectional=False, limits=LIMITS
    ) == {
        "power_w": 1600.0,
        "voltage_v": 229.5,
    }
    for values in ({"power_w": -5.0}, {"humidity_pct": 101.0}, {"power_w": 100_000.5}):
        with pytest.raises(CorrectionRefused) as refused:
            check_values(values, bidirectional=False, limits=LIMITS)
        assert refused.value.reason == "out_of_range"
    with pytest.raises(CorrectionRefused) as not_finite:
        check_values({"energy_wh": math.inf}, bidirectional=False, limits=LIMITS)
    assert not_finite.value.reason == "not_finite"
    assert check_values({"power_w": -5.0}, bidirectional=True, limits=LIMITS) == {"power_w": -5.0}


@settings(deadline=None)
@given(
    name=st.sampled_from(CORRECTABLE_FIELDS),
    value=st.floats(allow_nan=True, allow_infinity=True),
    bidirectional=st.booleans(),
)
def test_a_correction_accepts_exactly_the_values_ingest_accepts(
    name: str, value: float, bidirectional: bool
) -> None:
    field: dict[str, Any] = {name: value}
    reading = Reading(device_code="d", ts=EARLIEST_TS, bidirectional=bidirectional, **field)
    try:
        validate(reading, EARLIEST_TS, LIMITS)
        ingest_accepts = True
    except Rejected:
        ingest_accepts = False
    try:
        check_values({name: value}, bidirectional=bidirectional, limits=LIMITS)
        accepted = True
    except CorrectionRefused:
        accepted = False
    assert accepted == ingest_accepts


def test_assignments_parse_as_column_equals_number() -> None:
    assert parse_assignments(["power_w=1600", " energy_wh = 12.5"]) == {
        "power_w": 1600.0,
        "energy_wh": 12.5,
    }
    for bad, reason in (
        ("power_w", "malformed_assignment"),
        ("=3", "malformed_assignment"),
        ("power_w=abc", "malformed_value"),
    ):
        with pytest.raises(CorrectionRefused) as refused:
            parse_assignments([bad])
        assert refused.value.reason == reason


def test_a_timestamp_names_a_stored_row_only_in_utc_milliseconds() -> None:
    assert stored_ts(datetime.fromisoformat("2026-11-29T16:10:30.123+09:00")) == datetime(
        2026, 11, 29, 7, 10, 30, 123000, tzinfo=UTC
    )
    with pytest.raises(CorrectionRefused, match="timestamp_precision"):
        stored_ts(datetime(2026, 11, 29, 7, 10, 30, 123456, tzinfo=UTC))
    with pytest.raises(CorrectionRefused, match="timestamp_no_offset"):
        stored_ts(datetime(2026, 11, 29, 7, 10, 30))


def test_a_reading_30_s_before_the_hour_recomputes_both_hours_as_the_writer_does() -> None:
    # Hand-computed: 07:59:30 with max_gap 60 s reaches 07:58:30..08:00:30, hours 07 and 08.
    assert touched_hours(H + timedelta(minutes=59, seconds=30), timedelta(seconds=60)) == [
        H,
        H + timedelta(hours=1),
    ]


def test_the_persisted_id_covers_the_buckets_and_the_audit_rows() -> None:
    buckets = [Bucket(7, H + timedelta(hours=1)), Bucket(7, H)]
    body, msg_id = persisted_message(buckets, [5, 4])
    _, again = persisted_message(list(reversed(buckets)), [4, 5])
    assert again == msg_id and msg_id.startswith("c-")
    assert persisted_message(buckets, [4, 5, 6])[1] != msg_id
    assert persisted_message(buckets[:1], [4, 5])[1] != msg_id
    decoded = persisted_decoder.decode(body)
    assert decoded.buckets == [Bucket(7, H), Bucket(7, H + timedelta(hours=1))]
    assert decoded.rows == 0
