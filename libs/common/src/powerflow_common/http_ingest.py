"""HTTP ingest for gateways that cannot speak MQTT: the same validation and JetStream path.

A batch is a list of items, each a reading in the original device format
(``{"deviceCode":...,"timestamp":...,"electric":...}``) or in the canonical one
(``{"device_code":...,"ts":...,"power_w":...}``). Valid readings go to READINGS as one
message whose ``Nats-Msg-Id`` covers their whole content (``powerflow_common.msgids``), so a
retried POST stores nothing twice and a correction is never mistaken for a retry; invalid
items go to REJECTED, each with its reason.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

import msgspec
from nats.js import JetStreamContext

from powerflow_common.errors import Rejected
from powerflow_common.formats import rejection_record
from powerflow_common.formats.original import LEGACY_TOPIC, ORIGINAL
from powerflow_common.msgids import id_kind, readings_msg_id, rejection_msg_id
from powerflow_common.names import Names
from powerflow_common.validation import Limits, validate
from powerflow_common.wire import (
    MAX_READINGS_PER_MESSAGE,
    REJECTED_PAYLOAD_LIMIT,
    Reading,
    ReadingBatch,
    json_encoder,
)

HTTP_TOPIC = "http/ingest"  # the "topic" rejection records of HTTP items carry
MAX_ITEMS = 5_000
# The reason an item of a device its key is not bound to is refused (and kept in REJECTED,
# where an operator sees who tried).
DEVICE_NOT_ALLOWED = "device_not_allowed"

_canonical = msgspec.json.Decoder(Reading)


class ItemResult(msgspec.Struct, frozen=True, omit_defaults=True):
    """What became of one item of a batch."""

    index: int
    status: Literal["accepted", "rejected"]
    device_code: str | None = None
    ts: datetime | None = None
    reason: str | None = None
    detail: str | None = None


def decode_item(item: Any, now: datetime, limits: Limits) -> Reading:
    """One item as a validated canonical reading, or Rejected."""
    if not isinstance(item, dict):
        raise Rejected("not_object", "each item must be a JSON object")
    raw = msgspec.json.encode(item)
    if "device_code" in item or "ts" in item:
        try:
            reading = _canonical.decode(raw)
        except msgspec.ValidationError as exc:
            raise Rejected("wrong_type", str(exc)) from None
        # Over HTTP a device cannot claim a local clock or a meter type; those come from
        # the device's registration.
        reading = msgspec.structs.replace(
            reading, local_time=False, payload_format="http", bidirectional=False
        )
        if reading.ts.tzinfo is None:
            raise Rejected("timestamp_no_offset", "ts must carry a UTC offset")
        return validate(reading, now, limits)
    # Decoded as on the shared topic (the payload names the device) but not tagged with it:
    # over HTTP the key, not the topic, says who sent it (Reading.topic stays "").
    [reading] = ORIGINAL.decode(LEGACY_TOPIC, raw, now, limits, retained=False)
    return validate(reading, now, limits)


def check_allowed(reading: Reading, allowed: frozenset[str] | None) -> Reading:
    """``reading`` if its device is one the sender may post for (None: any), else Rejected."""
    if allowed is None or reading.device_code in allowed:
        return reading
    raise Rejected(
        DEVICE_NOT_ALLOWED,
        f"this device key posts only for the {len(allowed)} device(s) it is bound to; "
        f"{reading.device_code!r} is not one of them (an admin binds a key to devices with "
        "'powerflow keys create --role device --device CODE')",
    )


def decode_items(
    items: list[Any], now: datetime, limits: Limits, allowed: frozenset[str] | None = None
) -> tuple[list[Reading], list[ItemResult], list[tuple[bytes, Rejected]]]:
    """Readings, a result per item, and the rejected items' bytes; pure, never raises.

    ``allowed``: the device codes the sender may post for (a device key's); None for any.
    """
    readings: list[Reading] = []
    results: list[ItemResult] = []
    rejected: list[tuple[bytes, Rejected]] = []
    for index, item in enumerate(items):
        try:
            reading = check_allowed(decode_item(item, now, limits), allowed)
        except Rejected as exc:
            rejected.append((msgspec.json.encode(item), exc))
            results.append(
                ItemResult(index=index, status="rejected", reason=exc.reason, detail=exc.detail)
            )
            continue
        readings.append(reading)
        results.append(
            ItemResult(
                index=index, status="accepted", device_code=reading.device_code, ts=reading.ts
            )
        )
    return readings, results, rejected


async def publish_items(
    js: JetStreamContext,
    names: Names,
    readings: list[Reading],
    rejected: list[tuple[bytes, Rejected]],
    *,
    received_at: datetime,
    timeout_s: float,
    rejected_payload_max_bytes: int = REJECTED_PAYLOAD_LIMIT,
    on_duplicate: Callable[[str], None] | None = None,
) -> int:
    """Publish to READINGS and REJECTED and await JetStream's acks (raises if it is away).

    Returns how many of these publishes JetStream already had (a retried POST); each is
    also passed to ``on_duplicate`` with its kind (``readings`` or ``rejected``), for the
    caller's metric.
    """
    duplicates = 0

    def seen(ack: Any, msg_id: str) -> int:
        if not ack.duplicate:
            return 0
        if on_duplicate is not None:
            on_duplicate(id_kind(msg_id))
        return 1

    for start in range(0, len(readings), MAX_READINGS_PER_MESSAGE):
        chunk = readings[start : start + MAX_READINGS_PER_MESSAGE]
        body = json_encoder.encode(
            ReadingBatch(readings=chunk, ingested_at=received_at, source="http")
        )
        subject, msg_id = names.readings_subject("http"), readings_msg_id(chunk)
        ack = await js.publish(subject, body, timeout=timeout_s, headers={"Nats-Msg-Id": msg_id})
        duplicates += seen(ack, msg_id)
    for payload, exc in rejected:
        record = rejection_record(
            exc,
            topic=HTTP_TOPIC,
            payload=payload,
            received_at=received_at,
            payload_limit=rejected_payload_max_bytes,
        )
        subject = names.rejected_subject(exc.reason)
        msg_id = rejection_msg_id(HTTP_TOPIC, payload, exc.reason)
        ack = await js.publish(
            subject, json_encoder.encode(record), timeout=timeout_s, headers={"Nats-Msg-Id": msg_id}
        )
        duplicates += seen(ack, msg_id)
    return duplicates
