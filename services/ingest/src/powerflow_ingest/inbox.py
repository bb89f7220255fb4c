"""The hand-over from paho's network thread to asyncio, woken once per burst, not per message."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque

from powerflow_ingest.mqtt import Inbound


class Inbox:
    """A thread-safe buffer of MQTT messages that asyncio drains in batches."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: deque[Inbound] = deque()
        self._lock = threading.Lock()
        self._ready = asyncio.Event()
        self._waiting = False  # whether the loop has been (or will be) woken for new items

    def put(self, item: Inbound) -> None:
        """Called from paho's thread for every message."""
        with self._lock:
            self._items.append(item)
            if self._waiting:
                return
            self._waiting = True
        # One wake-up per burst: call_soon_threadsafe per message costs more than decoding.
        self._loop.call_soon_threadsafe(self._ready.set)

    def _take(self, limit: int, batch: list[Inbound]) -> None:
        with self._lock:
            while self._items and len(batch) < limit:
                batch.append(self._items.popleft())
            if not self._items:
                self._waiting = False
                self._ready.clear()

    async def get_batch(self, limit: int, linger_s: float, idle_s: float = 0.25) -> list[Inbound]:
        """Up to ``limit`` messages, waiting ``linger_s`` after the first for more to come."""
        batch: list[Inbound] = []
        try:
            await asyncio.wait_for(self._ready.wait(), timeout=idle_s)
        except TimeoutError:
            return batch
        self._take(limit, batch)
        deadline = time.monotonic() + linger_s
        while len(batch) < limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self._ready.wait(), timeout=remaining)
            except TimeoutError:
                break
            self._take(limit, batch)
        return batch

    def __len__(self) -> int:
        return len(self._items)
