"""Pure parts of the API: the live hub's bounded queues, cursors, keys and roles."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from powerflow_api.keys import KEY_PATTERN, Principal, check_role, new_key
from powerflow_api.live import KEY_REVOKED, LiveHub, LiveLimitReached
from powerflow_api.problems import ApiError
from powerflow_api.readings import Cursor, decode_cursor, encode_cursor
from powerflow_api.throttle import FailureThrottle
from powerflow_common.wire import Reading, ReadingBatch, json_encoder


@dataclass
class FakeMsg:
    """The two attributes of a NATS message the hub reads."""

    data: bytes
    subject: str = "readings.0"


def _batch(*codes: str, topic: str = "") -> FakeMsg:
    now = datetime.now(UTC)
    readings = [Reading(device_code=c, ts=now, power_w=1.0, topic=topic) for c in codes]
    return FakeMsg(json_encoder.encode(ReadingBatch(readings=readings, ingested_at=now)))


async def test_a_slow_client_is_dropped_without_holding_up_the_others() -> None:
    hub = LiveHub(queue_size=2)
    slow = hub.register(None)
    picky = hub.register(frozenset({"b"}))
    await hub.on_message(_batch("a", "a", "a", "b"))  # type: ignore[arg-type]
    assert slow.dropped.is_set() and slow.queue.qsize() == 2
    assert not picky.dropped.is_set() and picky.queue.qsize() == 1
    await asyncio.wait_for(hub.on_message(_batch("b")), 1)  # type: ignore[arg-type]
    assert picky.queue.qsize() == 2


async def test_live_shows_shared_topic_readings_only_of_legacy_enrolled_devices() -> None:
    # The writer stores no other reading from power/measurement: nobody sees it live either.
    hub = LiveHub(queue_size=10)
    client = hub.register(None)
    await hub.on_message(_batch("old-1", "forged", topic="power/measurement"))  # type: ignore[arg-type]
    assert client.queue.empty()  # nothing loaded yet: fail closed
    hub.legacy_codes = frozenset({"old-1"})
    await hub.on_message(_batch("old-1", "forged", topic="power/measurement"))  # type: ignore[arg-type]
    await hub.on_message(_batch("own-1", topic="power/own-1/measurement"))  # type: ignore[arg-type]
    seen = [client.queue.get_nowait() for _ in range(client.queue.qsize())]
    assert [b'"old-1"' in s for s in seen] == [True, False]
    assert b'"own-1"' in seen[1]


async def test_an_undecodable_message_is_skipped() -> None:
    hub = LiveHub(queue_size=2)
    client = hub.register(None)
    await hub.on_message(FakeMsg(b"not json"))  # type: ignore[arg-type]
    assert client.queue.empty() and not client.dropped.is_set()


def test_a_cursor_round_trips_and_a_tampered_one_is_a_400() -> None:
    cursor = Cursor(
        after=datetime(2026, 1, 1, tzinfo=UTC),
        as_of=datetime(2026, 1, 2, tzinfo=UTC),
        resolution="raw",
        device_id=3,
    )
    assert decode_cursor(encode_cursor(cursor)) == cursor
    with pytest.raises(ApiError) as err:
        decode_cursor("bm90IGEgY3Vyc29y")
    assert err.value.status_code == 400


def test_keys_have_the_documented_shape_and_roles_rank_in_order() -> None:
    key, prefix = new_key()
    match = KEY_PATTERN.fullmatch(key)
    assert match is not None and match.group(1) == prefix
    admin = Principal(1, "a", "admin")
    device = Principal(2, "d", "device")
    assert admin.at_least("operator") and admin.at_least("viewer")
    assert not device.at_least("viewer")
    assert not Principal(3, "v", "viewer").at_least("operator")
    with pytest.raises(ValueError, match="expected one of"):
        check_role("root")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failed_logins_use_a_burst_then_refill_at_the_rate() -> None:
    clock = FakeClock()
    throttle = FailureThrottle(burst=3, per_minute=6, max_addresses=100, clock=clock)
    for _ in range(3):
        assert throttle.retry_after_s("10.0.0.1") is None
        throttle.failed("10.0.0.1")
    assert throttle.retry_after_s("10.0.0.1") == 10  # 6 a minute: one token every 10 s
    assert throttle.retry_after_s("10.0.0.2") is None  # another address is not affected
    clock.now += 10
    assert throttle.retry_after_s("10.0.0.1") is None
    throttle.failed("10.0.0.1")
    assert throttle.retry_after_s("10.0.0.1") == 10
    clock.now += 3600  # refilled to the burst: forgotten
    assert throttle.retry_after_s("10.0.0.1") is None and len(throttle) == 0


def test_the_throttle_remembers_a_bounded_number_of_addresses() -> None:
    throttle = FailureThrottle(burst=1, per_minute=1, max_addresses=100, clock=FakeClock())
    for n in range(1000):
        throttle.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(throttle) == 100
    assert throttle.retry_after_s("10.0.3.231") is not None  # the most recent is kept
    assert throttle.retry_after_s("10.0.0.0") is None  # the oldest was forgotten


async def test_a_keys_sockets_are_capped_and_closed_when_it_is_revoked() -> None:
    hub = LiveHub(queue_size=2, max_per_key=2)
    first, second = hub.register(None, key_id=7), hub.register(None, key_id=7)
    with pytest.raises(LiveLimitReached):
        hub.register(None, key_id=7)
    other = hub.register(None, key_id=8)
    assert hub.key_ids() == {7, 8}
    assert hub.close_keys({7}) == 2
    assert first.dropped.is_set() and first.closed_because == KEY_REVOKED
    assert second.dropped.is_set() and not other.dropped.is_set()
    assert hub.key_ids() == {8}
    hub.unregister(first)
    hub.unregister(second)
    hub.register(None, key_id=7)  # closed sockets free their places
