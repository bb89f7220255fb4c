"""The MQTT sessions of the slots this instance holds: started on a claim, stopped on a loss.

Every slot's session feeds one inbox and one bridge; an ack goes back to the session the
message came in on (``Inbound.slot``), and only while that very session lives: a message
of a slot since let go is acked by nobody here, and the broker gives it to the slot's next
holder (stored again, which changes nothing).

The broker's ``$SYS`` counters come on every slot's connection; one slot's (the lowest
held) reach the broker-health listener, so values are paired within one connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from powerflow_common.logs import get_logger
from powerflow_ingest import metrics
from powerflow_ingest.mqtt import Inbound, MqttSource, SysListener

log = get_logger(__name__)

# Builds a slot's source; its SysListener is the gate below.
SourceFactory = Callable[[int, SysListener | None], MqttSource]


class _SysGate:
    """Passes one slot's $SYS values to the listener while that slot is the chosen one."""

    def __init__(self, sources: SlotSources, slot: int, listener: SysListener) -> None:
        self._sources = sources
        self._slot = slot
        self._listener = listener

    def subscribed(self, connection: int) -> None:
        if self._sources.sys_slot == self._slot:
            self._listener.subscribed(connection)

    def refused(self, topic: str, reason: str) -> None:
        if self._sources.sys_slot == self._slot:
            self._listener.refused(topic, reason)

    def message(self, topic: str, payload: bytes, connection: int) -> None:
        if self._sources.sys_slot == self._slot:
            self._listener.message(topic, payload, connection)


class SlotSources:
    """The ``SlotHandler`` of ``leases.LeaseKeeper``: one ``MqttSource`` per held slot."""

    def __init__(self, make_source: SourceFactory, sys_listener: SysListener | None) -> None:
        self._make = make_source
        self._sys_listener = sys_listener
        self._sources: dict[int, MqttSource] = {}
        self.sys_slot: int | None = None  # read from paho's threads: one int, atomic
        metrics.MQTT_CONNECTED.set_function(self._all_connected)

    def _all_connected(self) -> float:
        sources = list(self._sources.values())
        return 1.0 if sources and all(s.connected.is_set() for s in sources) else 0.0

    @property
    def slots(self) -> list[int]:
        return sorted(self._sources)

    def source(self, slot: int) -> MqttSource | None:
        return self._sources.get(slot)

    async def acquired(self, slot: int) -> None:
        gate = None if self._sys_listener is None else _SysGate(self, slot, self._sys_listener)
        source = self._make(slot, gate)
        self._sources[slot] = source
        self._choose_sys()
        source.start()

    async def lost(self, slot: int) -> None:
        source = self._sources.pop(slot, None)
        self._choose_sys()
        if source is not None:
            # Returns once paho has sent DISCONNECT and its thread ended: the session is free
            # for the next holder (the broker keeps it and its queue).
            await asyncio.to_thread(source.stop)

    def _choose_sys(self) -> None:
        self.sys_slot = min(self._sources) if self._sources else None

    def ack(self, inbound: Inbound) -> bool:
        """Ack on the session the message came from, if it is still this instance's."""
        source = self._sources.get(inbound.slot)
        return source.ack(inbound) if source is not None else False

    async def stop_all(self) -> None:
        for slot in list(self._sources):
            await self.lost(slot)
