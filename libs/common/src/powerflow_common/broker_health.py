"""The MQTT broker's own drop counter as ingest last saw it, shared by ingest and the API.

Mosquitto counts every message it throws away for a full queue
(``$SYS/broker/publish/messages/dropped``); most such drops happen while ingest is away, so
ingest keeps what it saw in a JetStream key-value bucket (one key per broker) and the API's
``/readyz`` reads the same record. The record's shape and the alarm rule live here, once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from powerflow_common.names import KV_SUBJECT_PREFIX, Names, kv_stream, kv_subjects

NOT_AVAILABLE = "broker drop counter not available"

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class BrokerHealthRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What ingest last saw of one broker's counters, and the last rise it reported."""

    broker: str  # host:port as ingest reaches it
    available: bool  # False: the broker publishes no drop counter (not Mosquitto, $SYS off)
    observed_at: datetime
    dropped: int | None = None  # the broker's own counter, since its start
    uptime_s: int | None = None
    last_rise: int = 0  # messages dropped between two observations
    last_rise_at: datetime | None = None
    rises_total: int = 0  # every rise ingest has reported for this broker, across restarts


_decoder = msgspec.json.Decoder(BrokerHealthRecord)
_encoder = msgspec.json.Encoder()


def encode_record(record: BrokerHealthRecord) -> bytes:
    return _encoder.encode(record)


def decode_record(data: bytes) -> BrokerHealthRecord:
    return _decoder.decode(data)


def broker_key(host: str, port: int) -> str:
    """The record's key: KV keys allow few characters, so a host becomes ``127_0_0_1_1883``."""
    return _KEY_UNSAFE.sub("_", f"{host}_{port}")


@dataclass(frozen=True, slots=True)
class DropAlarm:
    """What ``/readyz`` says about the brokers: degraded or not, and why, in words."""

    degraded: bool
    detail: str | None


def drop_alarm(
    records: Iterable[BrokerHealthRecord], now: datetime, window: timedelta
) -> DropAlarm:
    """Degraded while any broker was seen dropping within ``window`` before ``now``."""
    recent: list[str] = []
    unavailable: list[str] = []
    for record in sorted(records, key=lambda r: r.broker):
        if record.last_rise_at is not None and now - record.last_rise_at <= window:
            recent.append(
                f"{record.broker} dropped {record.last_rise} messages"
                f" (seen {record.last_rise_at.isoformat(timespec='seconds')})"
            )
        if not record.available:
            unavailable.append(record.broker)
    parts = list(recent)
    if unavailable:
        parts.append(f"{NOT_AVAILABLE} ({', '.join(unavailable)})")
    return DropAlarm(degraded=bool(recent), detail="; ".join(parts) or None)


def bucket_config(names: Names, replicas: int = 1) -> KeyValueConfig:
    """The bucket's configuration (``ensure_streams`` creates it with the streams)."""
    return KeyValueConfig(
        bucket=names.broker_health_bucket,
        description="MQTT brokers' drop counters as ingest last saw them",
        history=1,
        storage=StorageType.FILE,
        replicas=replicas,
    )


async def open_bucket(js: JetStreamContext, names: Names) -> KeyValue:
    """The bucket (ingest writes it; the API only reads), created here only if
    ``ensure_streams`` has not (it does, with ``stream_replicas`` copies)."""
    try:
        return await js.key_value(names.broker_health_bucket)
    except BucketNotFoundError:
        return await js.create_key_value(bucket_config(names))


async def read_records(js: JetStreamContext, names: Names) -> list[BrokerHealthRecord]:
    """Every broker's record; none when no ingest has written one yet."""
    try:
        bucket = await js.key_value(names.broker_health_bucket)
    except BucketNotFoundError:
        return []
    # The keys are the stream's subjects, as the server counts them. Not ``bucket.keys()``:
    # nats.py lists keys with a watcher that can signal "no more" before the first key arrives
    # when the machine is busy, so a bucket with records read as empty now and then.
    bucket_name = names.broker_health_bucket
    info = await js.stream_info(kv_stream(bucket_name), subjects_filter=kv_subjects(bucket_name))
    prefix = f"{KV_SUBJECT_PREFIX}{bucket_name}."
    keys = sorted(subject.removeprefix(prefix) for subject in info.state.subjects or {})
    records = []
    for key in keys:
        try:
            entry = await bucket.get(key)
        except KeyNotFoundError:
            continue  # deleted between listing and reading
        if entry.value:
            records.append(decode_record(entry.value))
    return records


async def delete_bucket(js: JetStreamContext, names: Names) -> None:
    """Remove the bucket (tests and ``powerflow streams --delete``)."""
    try:
        await js.delete_key_value(names.broker_health_bucket)
    except NotFoundError:
        return
