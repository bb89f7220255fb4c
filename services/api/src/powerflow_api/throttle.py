"""Failed authentication per client address: a token bucket in each API process.

Checked before a key is looked up, so a flood of wrong keys costs no database query once
its address is throttled. In-process, not Redis: it needs no round trip on every request,
keeps working (closed) when Redis is down, and protects exactly what it is for, this
process's database pool. With N API copies behind a balancer an address gets N buckets;
a 256-bit key cannot be guessed either way, so that only scales the load a flood can cause.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

SECONDS_PER_MINUTE = 60.0


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class FailureThrottle:
    """``burst`` failures at once per address, refilled at ``per_minute``; memory bounded."""

    def __init__(
        self,
        burst: int,
        per_minute: float,
        max_addresses: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.per_minute = per_minute
        self.max_addresses = max_addresses
        self._rate_per_s = per_minute / SECONDS_PER_MINUTE
        self._clock = clock
        # Least recently failed first: beyond max_addresses the oldest is forgotten (a flood
        # of spoofed-looking addresses cannot grow memory, only reset old buckets).
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _refilled(self, address: str, now: float) -> _Bucket | None:
        bucket = self._buckets.get(address)
        if bucket is None:
            return None
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self._rate_per_s)
        bucket.updated = now
        if bucket.tokens >= self.burst:  # full again: nothing to remember
            del self._buckets[address]
            return None
        return bucket

    def retry_after_s(self, address: str) -> int | None:
        """Whole seconds until ``address`` may try again, or None when it may now."""
        bucket = self._refilled(address, self._clock())
        if bucket is None or bucket.tokens >= 1:
            return None
        return max(1, math.ceil((1 - bucket.tokens) / self._rate_per_s))

    def failed(self, address: str) -> None:
        """Count one failed authentication from ``address``."""
        now = self._clock()
        bucket = self._refilled(address, now) or _Bucket(tokens=float(self.burst), updated=now)
        bucket.tokens = max(0.0, bucket.tokens - 1)
        self._buckets[address] = bucket
        self._buckets.move_to_end(address)
        while len(self._buckets) > self.max_addresses:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)


# How long a key that authenticated still passes a throttled address to the database check:
# a day covers a dashboard left open; the key is still looked up (and refused once revoked).
KNOWN_KEY_TTL_S = 24 * 3600.0


class KnownKeys:
    """Digests of keys that authenticated lately, so a throttled address (a shared NAT, or
    a proxy without api_trusted_proxies) locks out only guesses, never its valid keys.

    A guess never matches (a 256-bit key), so a flood of guesses still costs no database
    query; a known key goes on to the normal lookup, so revoking it still takes effect.
    Memory is bounded: beyond ``max_keys`` the least recently seen is forgotten.
    """

    def __init__(
        self,
        max_keys: int,
        ttl_s: float = KNOWN_KEY_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_keys = max_keys
        self.ttl_s = ttl_s
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    @staticmethod
    def digest(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    def remember(self, key: str) -> None:
        digest = self.digest(key)
        self._seen[digest] = self._clock()
        self._seen.move_to_end(digest)
        while len(self._seen) > self.max_keys:
            self._seen.popitem(last=False)

    def knows(self, key: str) -> bool:
        seen = self._seen.get(self.digest(key))
        return seen is not None and self._clock() - seen < self.ttl_s
