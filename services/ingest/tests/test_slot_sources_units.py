"""The slots' MQTT sessions: acks go back only to the live session a message came in on, and
one slot's $SYS values reach broker health."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from powerflow_common.errors import ConfigurationError
from powerflow_ingest.mqtt import (
    BrokerAddress,
    Inbound,
    MqttSource,
    SysListener,
    checked_slot_login,
    slot_address,
)
from powerflow_ingest.slots import SlotSources

ADDRESS = BrokerAddress(host="127.0.0.1", port=1, tls=False, username=None, password=None)


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[str, int]] = []

    def subscribed(self, connection: int) -> None:
        pass

    def refused(self, topic: str, reason: str) -> None:
        pass

    def message(self, topic: str, payload: bytes, connection: int) -> None:
        self.messages.append((topic, connection))


class NotStarted(MqttSource):
    """A real source that never touches the network: start and stop do nothing."""

    acked: list[int]

    def start(self) -> None:
        self.acked = []

    def stop(self, timeout_s: float = 5.0) -> None:
        pass

    @property
    def listener(self) -> SysListener | None:
        return self._sys_listener

    def inbound(self, mid: int) -> Inbound:
        return Inbound(
            topic="power/x/measurement",
            payload=b"{}",
            qos=1,
            mid=mid,
            retain=False,
            received_at=datetime.now(UTC),
            epoch=self._epoch,
            slot=self._slot,
        )


def factory(made: list[NotStarted]):  # type: ignore[no-untyped-def]
    def make(slot: int, listener: SysListener | None) -> MqttSource:
        source = NotStarted(
            address=ADDRESS,
            client_id=f"powerflow-ingest-{slot}",
            topics=(f"t{slot}",),
            session_expiry_s=60,
            receive_maximum=100,
            keepalive_s=30,
            deliver=lambda _m: None,
            sys_listener=listener,
            slot=slot,
        )
        made.append(source)
        return source

    return make


def test_an_ack_goes_only_to_the_live_session_of_its_slot() -> None:
    made: list[NotStarted] = []
    sources = SlotSources(factory(made), None)

    async def scenario() -> None:
        await sources.acquired(0)
        await sources.acquired(1)
        first = made[0].inbound(7)
        assert sources.ack(first) is True
        await sources.lost(0)
        assert sources.ack(made[0].inbound(8)) is False  # slot let go: nobody acks here
        await sources.acquired(0)  # adopted again: a new session object, a new epoch
        assert sources.ack(first) is False
        assert sources.ack(made[2].inbound(9)) is True
        assert sources.slots == [0, 1]

    asyncio.run(scenario())


def test_only_the_lowest_held_slot_feeds_broker_health() -> None:
    made: list[NotStarted] = []
    recorder = Recorder()
    sources = SlotSources(factory(made), recorder)

    async def scenario() -> None:
        await sources.acquired(2)
        await sources.acquired(1)
        for source in made:
            assert source.listener is not None
            source.listener.message("$SYS/broker/uptime", b"1 seconds", 10 + len(made))
        assert len(recorder.messages) == 1  # slot 1's, not slot 2's
        await sources.lost(1)
        made[0].listener.message("$SYS/broker/uptime", b"2 seconds", 20)  # type: ignore[union-attr]
        assert recorder.messages[-1] == ("$SYS/broker/uptime", 20)

    asyncio.run(scenario())


def test_the_url_may_name_any_slot_and_each_slot_logs_in_as_itself() -> None:
    ids = ("powerflow-ingest-0", "powerflow-ingest-1", "powerflow-ingest-2")
    address = BrokerAddress.parse("mqtt://powerflow-ingest-0:pw@broker:1883")
    assert checked_slot_login(address, ids) == "powerflow-ingest-0"
    second = slot_address(address, ids[2])
    assert (second.username, second.password, second.host) == (ids[2], "pw", "broker")
    anonymous = BrokerAddress.parse("mqtt://broker:1883")
    assert slot_address(anonymous, ids[1]).username is None  # a broker without accounts


def test_a_login_outside_the_slots_is_refused_with_what_to_set() -> None:
    ids = ("powerflow-ingest-0", "powerflow-ingest-1")
    address = BrokerAddress.parse("mqtt://powerflow-ingest-7:pw@broker:1883")
    with pytest.raises(ConfigurationError, match=r"powerflow-ingest-0\.\.powerflow-ingest-1"):
        checked_slot_login(address, ids)
