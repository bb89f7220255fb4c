"""MQTT topic helpers shared by the payload formats."""

from __future__ import annotations

import re
from datetime import datetime

from powerflow_common.errors import Ignored, Rejected

_NOT_IN_CODE = re.compile(r"[^A-Za-z0-9_:-]")


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT wildcard match of ``topic`` against ``pattern`` (``+`` one level, ``#`` the rest)."""
    pat_levels = pattern.split("/")
    top_levels = topic.split("/")
    for i, pat in enumerate(pat_levels):
        if pat == "#":
            return True
        if i >= len(top_levels):
            return False
        if pat != "+" and pat != top_levels[i]:
            return False
    return len(pat_levels) == len(top_levels)


def code_from_topic(*parts: str) -> str:
    """A device code from topic levels (and a channel): other characters become ``_``."""
    code = "-".join(_NOT_IN_CODE.sub("_", p) for p in parts if p)
    if not code:
        raise Rejected("invalid_device_code", "the topic names no device")
    return code[:64]


def arrival_ts(now: datetime, retained: bool) -> datetime:
    """The reading time of a format without timestamps: arrival, to the whole second.

    Whole seconds let the one-quantity messages a device sends together share one
    (device, ts) key, so the writer merges them into one row. A retained message replayed
    on subscribe is an old state, not a new reading.
    """
    if retained:
        raise Ignored("retained_replay", "a retained state replayed on subscribe")
    return now.replace(microsecond=0)


def plain_number(payload: bytes) -> float | None:
    """A plain-text number as ESPHome and emonhub publish it; ``nan``/``None`` are no value."""
    try:
        text = payload.decode("ascii").strip()
    except UnicodeDecodeError:
        raise Rejected("invalid_utf8", "a plain-text value must be ASCII") from None
    if text.lower() in ("nan", "none", "null", "unavailable", "unknown", ""):
        return None
    try:
        return float(text)
    except ValueError:
        raise Rejected("not_a_number", f"{text[:40]!r} is not a number") from None
