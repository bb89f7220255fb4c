"""Payload formats: each turns one MQTT message into canonical readings, chosen by topic."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import msgspec

from powerflow_common.errors import Ignored, Rejected
from powerflow_common.formats.mqtt_topics import topic_matches
from powerflow_common.validation import Limits, canonical_device_code, validate
from powerflow_common.wire import REJECTED_PAYLOAD_LIMIT, Reading, Rejection

__all__ = [
    "MAX_DEVICES_PER_MESSAGE",
    "PayloadFormat",
    "decode_message",
    "find_format",
    "owner_in_topic",
    "owns",
    "rejection_record",
    "topic_matches",
]


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


# A valid topic level that no valid device code can be: marks the code's level in a template.
_CODE_MARK = "\x00"

# Distinct devices one message may name: the most channels a real device reports at once
# (Tasmota power arrays, Shelly components, emonhub inputs) is well under this; more is one
# account trying to register devices by the thousand.
MAX_DEVICES_PER_MESSAGE = 32


def owner_in_topic(fmt: PayloadFormat, topic: str) -> str | None:
    """The code whose grants (``fmt.device_topics``) cover ``topic``, as written in the topic.

    On the closed broker only the account ``device-<owner>`` may publish there. None for a
    topic no device grant covers (the legacy shared topic: the payload names the device).
    """
    for template in fmt.device_topics(_CODE_MARK):
        levels = template.split("/")
        index = levels.index(_CODE_MARK)
        pattern = "/".join("+" if level == _CODE_MARK else level for level in levels)
        if topic_matches(pattern, topic):
            return topic.split("/")[index]
    return None


def owns(owner: str, code: str) -> bool:
    """Whether a reading of ``code`` may come from the device ``owner``'s topics.

    Its own code, or one of its channels ``<owner>-<n>`` as the decoders build them (from the
    topic as written, compared before any canonical form): a channel suffix can never turn a
    code into another device's, such as a MAC address (``a4-cf-12-9b-00`` + ``-01``).
    """
    return code == canonical_device_code(owner) or bool(_channel_of(owner).fullmatch(code))


def _channel_of(owner: str) -> re.Pattern[str]:
    return re.compile(re.escape(owner) + r"-[0-9]{1,3}")


def _check_ownership(fmt: PayloadFormat, topic: str, readings: Sequence[Reading]) -> None:
    codes = {r.device_code for r in readings}
    if len(codes) > MAX_DEVICES_PER_MESSAGE:
        raise Rejected(
            "too_many_devices",
            f"one message names {len(codes)} devices; at most {MAX_DEVICES_PER_MESSAGE}",
        )
    owner = owner_in_topic(fmt, topic)
    if owner is None:
        return
    for code in sorted(codes):
        if not owns(owner, code):
            raise Rejected(
                "device_not_owned",
                f"topic {topic[:120]!r} belongs to device {owner[:64]!r}, which cannot"
                f" publish readings of {code[:64]!r}",
            )


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
        valid = [msgspec.structs.replace(validate(r, now, limits), topic=topic) for r in readings]
        _check_ownership(fmt, topic, valid)
        return valid
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
