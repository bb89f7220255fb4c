"""Live readings: one core-NATS subscription per process, fanned out to bounded client queues.

A client that does not keep up fills its queue and is dropped; the server never waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import msgspec
from nats.aio.msg import Msg

from powerflow_api import metrics
from powerflow_common.logs import get_logger
from powerflow_common.wire import batch_decoder, json_encoder

log = get_logger(__name__)


@dataclass(eq=False)
class LiveClient:
    """One socket's queue of encoded readings and the device codes it asked for (None: all)."""

    devices: frozenset[str] | None
    queue: asyncio.Queue[bytes]
    dropped: asyncio.Event = field(default_factory=asyncio.Event)


class LiveHub:
    """Fans readings out from NATS to every connected client, without ever blocking."""

    def __init__(self, queue_size: int) -> None:
        self.queue_size = queue_size
        self.clients: set[LiveClient] = set()

    def register(self, devices: frozenset[str] | None) -> LiveClient:
        client = LiveClient(devices, asyncio.Queue(self.queue_size))
        self.clients.add(client)
        metrics.LIVE_CLIENTS.set(len(self.clients))
        return client

    def unregister(self, client: LiveClient) -> None:
        self.clients.discard(client)
        metrics.LIVE_CLIENTS.set(len(self.clients))

    async def on_message(self, msg: Msg) -> None:
        """NATS callback: decode a ReadingBatch and offer each reading to interested clients."""
        try:
            batch = batch_decoder.decode(msg.data)
        except msgspec.DecodeError:
            log.warning("live_undecodable_message", subject=msg.subject, size=len(msg.data))
            return
        metrics.LIVE_READINGS.inc(len(batch.readings))
        if not self.clients:
            return
        for reading in batch.readings:
            encoded: bytes | None = None
            for client in list(self.clients):
                if client.dropped.is_set():
                    continue
                if client.devices is not None and reading.device_code not in client.devices:
                    continue
                encoded = encoded or json_encoder.encode(reading)
                try:
                    client.queue.put_nowait(encoded)
                except asyncio.QueueFull:
                    client.dropped.set()
                    metrics.LIVE_DROPPED.inc()
                    log.warning("live_client_dropped", reason="too slow", queued=self.queue_size)

    def close_all(self) -> None:
        for client in list(self.clients):
            client.dropped.set()
        with contextlib.suppress(Exception):
            self.clients.clear()
