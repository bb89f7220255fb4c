"""Wire formats carried over NATS: the canonical reading, its batches, rejections, commits."""

from __future__ import annotations

from datetime import datetime

import msgspec


class Reading(msgspec.Struct, frozen=True, omit_defaults=True, kw_only=True):
    """One canonical reading: what ingest publishes and writer stores, whatever the device sent."""

    device_code: str
    ts: datetime  # UTC, millisecond precision
    power_w: float | None = None
    energy_wh: float | None = None
    energy_export_wh: float | None = None
    voltage_v: float | None = None
    current_a: float | None = None
    temperature_c: float | None = None
    humidity_pct: float | None = None
    brightness_lux: float | None = None
    seq: int | None = None
    firmware: str | None = None
    # A device clock without an offset (Tasmota's local Time): ``ts`` is naive local time,
    # resolved to UTC by the writer with the device's site timezone.
    local_time: bool = False
    payload_format: str = "original"
    bidirectional: bool = False  # a meter that reports export as negative power
    # The MQTT topic it came on ("" over HTTP): the writer accepts the prototype's shared
    # topic, where only the payload names the device, for devices enrolled as legacy only.
    topic: str = ""

    @property
    def key(self) -> tuple[str, datetime]:
        """The identity of a reading: (device, ts)."""
        return (self.device_code, self.ts)


# The quantities a reading measures (what a chart or a raw export shows).
MEASURED_QUANTITIES: tuple[str, ...] = (
    "power_w",
    "energy_wh",
    "energy_export_wh",
    "voltage_v",
    "current_a",
    "temperature_c",
    "humidity_pct",
    "brightness_lux",
)
# Every stored field of a reading besides (device, ts): the quantities and the device's own
# bookkeeping.
MEASUREMENT_FIELDS: tuple[str, ...] = (*MEASURED_QUANTITIES, "seq", "firmware")


class ReadingBatch(msgspec.Struct, frozen=True, kw_only=True):
    """A micro-batch of readings carried by one JetStream message on ``readings.<partition>``."""

    readings: list[Reading]
    ingested_at: datetime
    source: str = ""  # the ingest instance that published it


class Rejection(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A dead-lettered input on ``rejected.<reason>``: enough to see what came and why."""

    reason: str
    detail: str
    stage: str  # "ingest" or "writer"
    received_at: datetime
    topic: str = ""
    format: str = ""
    size: int = 0
    sha256: str = ""
    payload: bytes = b""  # raw bytes, at most REJECTED_PAYLOAD_LIMIT
    truncated: bool = False
    reading: Reading | None = None  # for rows the database refused


class Bucket(msgspec.Struct, frozen=True, array_like=True):
    """One (device, hour) that a committed batch touched."""

    device_id: int
    hour_start: datetime


class Persisted(msgspec.Struct, frozen=True, kw_only=True):
    """Published on ``persisted`` after a batch is committed: the buckets to recompute."""

    buckets: list[Bucket]
    rows: int
    committed_at: datetime


REJECTED_PAYLOAD_LIMIT = 64 * 1024
MAX_READINGS_PER_MESSAGE = 1_000  # keeps a JetStream message far below NATS's 1 MiB

json_encoder = msgspec.json.Encoder()
batch_decoder = msgspec.json.Decoder(ReadingBatch)
rejection_decoder = msgspec.json.Decoder(Rejection)
persisted_decoder = msgspec.json.Decoder(Persisted)


# Alerts: the aggregator's "these hours were rolled up", on ``rolledup``.
class RolledUp(msgspec.Struct, frozen=True, kw_only=True):
    """Published by the aggregator after it committed the recompute of ``buckets``."""

    buckets: list[Bucket]
    rolled_up_at: datetime


rolled_up_decoder = msgspec.json.Decoder(RolledUp)
