"""The drop alarm /readyz shows: degraded while a broker dropped messages within the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from powerflow_common.broker_health import (
    NOT_AVAILABLE,
    BrokerHealthRecord,
    broker_key,
    decode_record,
    drop_alarm,
    encode_record,
)

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)


def record(broker: str = "mqtt:1883", **changes: object) -> BrokerHealthRecord:
    values: dict[str, object] = {"broker": broker, "available": True, "observed_at": NOW}
    values.update(changes)
    return BrokerHealthRecord(**values)  # type: ignore[arg-type]


def test_a_rise_within_the_window_degrades_and_says_how_many() -> None:
    alarm = drop_alarm(
        [record(last_rise=2000, last_rise_at=NOW - 59 * timedelta(minutes=1))], NOW, HOUR
    )
    assert alarm.degraded
    assert alarm.detail is not None and "mqtt:1883 dropped 2000 messages" in alarm.detail


def test_a_rise_older_than_the_window_or_none_at_all_is_ready() -> None:
    old = record(last_rise=5, last_rise_at=NOW - HOUR - timedelta(seconds=1))
    assert drop_alarm([old, record("other:1883")], NOW, HOUR).degraded is False
    assert drop_alarm([], NOW, HOUR).detail is None


def test_a_broker_without_counters_is_named_but_not_degraded() -> None:
    alarm = drop_alarm([record(available=False)], NOW, HOUR)
    assert not alarm.degraded and alarm.detail == f"{NOT_AVAILABLE} (mqtt:1883)"


def test_records_survive_their_encoding_and_keys_are_bucket_safe() -> None:
    original = record(dropped=3, uptime_s=40, last_rise=3, last_rise_at=NOW, rises_total=9)
    assert decode_record(encode_record(original)) == original
    assert broker_key("127.0.0.1", 1883) == "127_0_0_1_1883"
    assert broker_key("::1", 1883) == "__1_1883"
