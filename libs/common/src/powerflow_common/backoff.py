"""Exponential backoff with full jitter, so that many restarted clients do not return in step."""

from __future__ import annotations

import random
from collections.abc import Iterator


def jittered_delay(attempt: int, base_s: float = 0.5, cap_s: float = 30.0) -> float:
    """Delay before retry ``attempt`` (0-based): uniform in [base/2, min(cap, base * 2^attempt)]."""
    ceiling = min(cap_s, base_s * (2 ** min(attempt, 30)))
    return random.uniform(min(base_s / 2, ceiling), ceiling)


def delays(base_s: float = 0.5, cap_s: float = 30.0) -> Iterator[float]:
    """An endless series of jittered, exponentially growing delays."""
    attempt = 0
    while True:
        yield jittered_delay(attempt, base_s, cap_s)
        attempt += 1
