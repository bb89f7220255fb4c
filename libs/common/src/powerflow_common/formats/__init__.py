"""Payload formats: each turns one MQTT message into canonical readings, chosen by topic."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from powerflow_common.errors import Rejected
from powerflow_common.validation import Limits, validate
from powerflow_common.wire import REJECTED_PAYLOAD_LIMIT, Reading, Rejection


class PayloadFormat(Protocol):
    """A device payload format: its name, the topics it claims, and its decoder."""

    name: str
    topic_patterns: tuple[str, ...]

    def decode(self, topic: str, payload: bytes, now: datetime, limits: Limits) -> list[Reading]:
        """Canonical (not yet validated) readings of one message, or Rejected."""
        ...


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


def find_format(formats: Sequence[PayloadFormat], topic: str) -> PayloadFormat | None:
    """The first format claiming the topic, or None."""
    for fmt in formats:
        if any(topic_matches(p, topic) for p in fmt.topic_patterns):
            return fmt
    return None


def decode_message(
    formats: Sequence[PayloadFormat], topic: str, payload: bytes, now: datetime, limits: Limits
) -> list[Reading]:
    """Validated readings of one MQTT message, or Rejected; no other exception escapes."""
    fmt = find_format(formats, topic)
    if fmt is None:
        raise Rejected("unclaimed_topic", f"no enabled payload format claims topic {topic!r}")
    try:
        readings = fmt.decode(topic, payload, now, limits)
        if not readings:
            raise Rejected("no_readings", "the message carries no measurement")
        return [validate(r, now, limits) for r in readings]
    except Rejected as exc:
        exc.format_name = fmt.name
        raise
    except RecursionError:
        raise Rejected("too_deep", "payload nesting too deep", format_name=fmt.name) from None
    except Exception as exc:  # a decoder bug must not stop the bridge: dead-letter it
        raise Rejected(
            "decoder_error", f"{type(exc).__name__}: {exc}"[:500], format_name=fmt.name
        ) from exc


def rejection_record(
    exc: Rejected, *, topic: str, payload: bytes, received_at: datetime, stage: str = "ingest"
) -> Rejection:
    """The REJECTED record of a message: reason, size, sha256 and the raw bytes up to 64 KiB."""
    return Rejection(
        reason=exc.reason,
        detail=exc.detail,
        stage=stage,
        received_at=received_at,
        topic=topic,
        format=exc.format_name or "",
        size=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
        payload=payload[:REJECTED_PAYLOAD_LIMIT],
        truncated=len(payload) > REJECTED_PAYLOAD_LIMIT,
    )
