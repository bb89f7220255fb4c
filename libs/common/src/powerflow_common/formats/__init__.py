"""Payload formats: each turns one MQTT message into canonical readings, chosen by topic."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import msgspec

from powerflow_common.errors import Ignored, Rejected
from powerflow_common.formats.mqtt_topics import topic_matches
from powerflow_common.validation import Limits, validate
from powerflow_common.wire import REJECTED_PAYLOAD_LIMIT, Reading, Rejection

__all__ = ["PayloadFormat", "decode_message", "find_format", "rejection_record", "topic_matches"]


class PayloadFormat(Protocol):
    """A device payload format: its name, the topics it claims, and its decoder."""

    name: str
    topic_patterns: tuple[str, ...]

    def claims(self, topic: str) -> bool:
        """Whether a message on ``topic`` is this format's to decode."""
        ...

    def device_topics(self, code: str) -> tuple[str, ...]:
        """What the broker lets an enrolled device ``code`` publish to in this format.

        ``code`` is a valid device code (validation.DEVICE_CODE_PATTERN: no ``/``, ``+`` or
        ``#``), so it is exactly one topic level. Every topic these grants cover that some
        format claims is claimed by this format, with this code as the device
        (libs/common/tests/test_device_topics.py checks it for every pair of formats).
        """
        ...

    def decode(
        self, topic: str, payload: bytes, now: datetime, limits: Limits, *, retained: bool
    ) -> list[Reading]:
        """Canonical (not yet validated) readings of one message; Rejected or Ignored."""
        ...


def find_format(formats: Sequence[PayloadFormat], topic: str) -> PayloadFormat | None:
    """The first format claiming the topic, or None."""
    for fmt in formats:
        if fmt.claims(topic):
            return fmt
    return None


def decode_message(
    formats: Sequence[PayloadFormat],
    topic: str,
    payload: bytes,
    now: datetime,
    limits: Limits,
    *,
    retained: bool = False,
) -> list[Reading]:
    """Validated readings of one MQTT message; Rejected or Ignored, and no other exception."""
    fmt = find_format(formats, topic)
    if fmt is None:
        raise Ignored("unclaimed_topic", f"no enabled payload format claims topic {topic!r}")
    try:
        readings = fmt.decode(topic, payload, now, limits, retained=retained)
        if not readings:
            raise Ignored("no_measurements", "the message carries nothing to store")
        # Every reading carries the topic it came on: the writer's legacy-topic rule reads it.
        return [msgspec.structs.replace(validate(r, now, limits), topic=topic) for r in readings]
    except Ignored:
        raise
    except Rejected as exc:
        exc.format_name = fmt.name
        exc.detail = f"{fmt.name}: {exc.detail}"
        raise
    except RecursionError:
        raise Rejected("too_deep", "payload nesting too deep", format_name=fmt.name) from None
    except Exception as exc:  # a decoder bug must not stop the bridge: dead-letter it
        raise Rejected(
            "decoder_error", f"{type(exc).__name__}: {exc}"[:500], format_name=fmt.name
        ) from exc


def rejection_record(
    exc: Rejected,
    *,
    topic: str,
    payload: bytes,
    received_at: datetime,
    stage: str = "ingest",
    payload_limit: int = REJECTED_PAYLOAD_LIMIT,
) -> Rejection:
    """The REJECTED record of a message: reason, size, sha256 and the raw bytes up to a cap.

    The cap (``rejected_payload_max_bytes``) bounds what one flood of bad messages costs the
    REJECTED stream; size and sha256 always describe the whole payload.
    """
    return Rejection(
        reason=exc.reason,
        detail=exc.detail,
        stage=stage,
        received_at=received_at,
        topic=topic,
        format=exc.format_name or "",
        size=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
        payload=payload[:payload_limit],
        truncated=len(payload) > payload_limit,
    )
