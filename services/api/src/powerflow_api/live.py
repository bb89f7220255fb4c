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
from powerflow_common.admission import LEGACY_TOPIC
from powerflow_common.errors import Retryable
from powerflow_common.logs import get_logger
from powerflow_common.wire import batch_decoder, json_encoder

log = get_logger(__name__)


# Why a client's socket is closed (its close reason, under 123 bytes).
TOO_SLOW = "too slow: readings were dropped"
KEY_REVOKED = "the API key of this socket was revoked"
SHUTTING_DOWN = "server shutting down"


@dataclass(eq=False)
class LiveClient:
    """One socket's queue of encoded readings and the device codes it asked for (None: all).

    ``key_id``: the API key whose ticket opened it; ``closed_because`` says why the hub
    ended it (too slow, key revoked), set together with ``dropped``.
    """

    devices: frozenset[str] | None
    queue: asyncio.Queue[bytes]
    key_id: int = 0
    dropped: asyncio.Event = field(default_factory=asyncio.Event)
    closed_because: str = TOO_SLOW

    def end(self, reason: str) -> None:
        if not self.dropped.is_set():
            self.closed_because = reason
            self.dropped.set()


class LiveLimitReached(Retryable):
    """The key already has its api_live_max_per_key sockets open in this process."""


class LiveHub:
    """Fans readings out from NATS to every connected client, without ever blocking."""

    def __init__(self, queue_size: int, max_per_key: int = 5) -> None:
        self.queue_size = queue_size
        self.max_per_key = max_per_key
        self.clients: set[LiveClient] = set()
        # Devices allowed on the shared legacy topic (refreshed by the app): a reading there
        # of any other code is one the writer will refuse, so nobody sees it live either.
        # Empty until first loaded: fail closed.
        self.legacy_codes: frozenset[str] = frozenset()

    def open_for(self, key_id: int) -> int:
        """Sockets of ``key_id`` open in this process."""
        return sum(1 for c in self.clients if c.key_id == key_id and not c.dropped.is_set())

    def register(self, devices: frozenset[str] | None, key_id: int = 0) -> LiveClient:
        """A new client of ``key_id``; LiveLimitReached when the key has its maximum open."""
        if self.open_for(key_id) >= self.max_per_key:
            metrics.LIVE_REFUSED.inc()
            raise LiveLimitReached
        client = LiveClient(devices, asyncio.Queue(self.queue_size), key_id)
        self.clients.add(client)
        metrics.LIVE_CLIENTS.set(len(self.clients))
        return client

    def unregister(self, client: LiveClient) -> None:
        self.clients.discard(client)
        metrics.LIVE_CLIENTS.set(len(self.clients))

    def key_ids(self) -> set[int]:
        """The keys with an open socket (re-checked for revocation)."""
        return {c.key_id for c in self.clients if not c.dropped.is_set()}

    def close_keys(self, key_ids: set[int]) -> int:
        """End every socket of these keys (revoked); returns how many."""
        closed = 0
        for client in list(self.clients):
            if client.key_id in key_ids and not client.dropped.is_set():
                client.end(KEY_REVOKED)
                closed += 1
        if closed:
            metrics.LIVE_REVOKED.inc(closed)
            log.warning("live_sockets_closed", reason="key revoked", sockets=closed)
        return closed

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
            if reading.topic == LEGACY_TOPIC and reading.device_code not in self.legacy_codes:
                continue
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
                    client.end(TOO_SLOW)
                    metrics.LIVE_DROPPED.inc()
                    log.warning("live_client_dropped", reason="too slow", queued=self.queue_size)

    def close_all(self) -> None:
        for client in list(self.clients):
            client.end(SHUTTING_DOWN)
        with contextlib.suppress(Exception):
            self.clients.clear()
