"""``Nats-Msg-Id`` values derived from a message's whole content.

JetStream drops a publish whose id it has seen within the duplicate window. That is what
makes a retried publish harmless, and what silently loses data when two *different* messages
share an id: ESPHome sends power and energy of one second as two messages, and an id made of
the (device, ts) keys alone gave both batches the same id, so the second was dropped.

So an id covers every field of every reading (``local_time``, ``payload_format`` and
``bidirectional`` too), canonically ordered: the same readings in any order get the same id,
any different content a different one. Nothing volatile enters it (``ingested_at``, the
source instance): MQTT messages redelivered after a crash and re-batched identically must
still be recognised as the publish they repeat.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import msgspec

from powerflow_common.wire import Reading

# Bumped whenever the canonical encoding changes, so ids of two encodings never meet.
READINGS_ID_PREFIX = "r2-"
REJECTION_ID_PREFIX = "x2-"

# A JSON object never contains a raw newline (msgspec escapes it inside strings), so newline
# separates encoded readings without any ambiguity about where one ends.
_READING_SEPARATOR = b"\n"
# Each part of a rejection is length-prefixed: no topic/reason/payload split can collide.
_LENGTH_BYTES = 8

# Readings with ``omit_defaults``: a field at its default is left out, which is canonical
# (present-with-default and absent are the same reading), and fields keep declaration order.
_encode_reading = msgspec.json.Encoder().encode


def canonical_reading(reading: Reading) -> bytes:
    """One reading's canonical bytes: every field, in declaration order."""
    return _encode_reading(reading)


def readings_msg_id(readings: Sequence[Reading]) -> str:
    """The id of a batch of readings: same readings (any order) -> same id; else different."""
    digest = hashlib.sha256()
    # A sorted list, not a set: a batch is compared as the multiset of what it carries.
    for encoded in sorted(map(_encode_reading, readings)):
        digest.update(encoded)
        digest.update(_READING_SEPARATOR)
    return READINGS_ID_PREFIX + digest.hexdigest()


def id_kind(msg_id: str) -> str:
    """``readings`` or ``rejected``: what a publish with this id carried (for metrics)."""
    return "readings" if msg_id.startswith(READINGS_ID_PREFIX) else "rejected"


def content_id(prefix: str, *parts: bytes) -> str:
    """An id from parts of a message's content: equal parts, equal id; any difference, never.

    Each part is length-prefixed, so that ("ab", "c") and ("a", "bc") differ.
    """
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(_LENGTH_BYTES, "big"))
        digest.update(part)
    return f"{prefix}-{digest.hexdigest()}"


def rejection_msg_id(topic: str, payload: bytes, reason: str) -> str:
    """The id of a rejection record: redelivered copies of one bad message are stored once."""
    return content_id(REJECTION_ID_PREFIX.rstrip("-"), topic.encode(), reason.encode(), payload)
