"""The bridge: decoded MQTT messages -> JetStream, acking MQTT only after JetStream acked.

Messages are gathered for a few milliseconds into one batch; the batch's valid readings go
out as one JetStream message whose ``Nats-Msg-Id`` is derived from its whole content
(``powerflow_common.msgids``), its rejections each as a REJECTED message; then its MQTT
messages are acked. A publish JetStream refuses (a stream at its byte limit, NATS away) is
retried with backoff and nothing is acked meanwhile: the broker keeps the messages.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js.api import PubAck

from powerflow_common.backoff import jittered_delay
from powerflow_common.errors import Ignored, Rejected
from powerflow_common.formats import PayloadFormat, decode_message, find_format, rejection_record
from powerflow_common.jetstream import is_stream_full
from powerflow_common.logs import get_logger
from powerflow_common.msgids import id_kind, readings_msg_id, rejection_msg_id
from powerflow_common.names import Names
from powerflow_common.validation import Limits
from powerflow_common.wire import (
    MAX_READINGS_PER_MESSAGE,
    REJECTED_PAYLOAD_LIMIT,
    Reading,
    ReadingBatch,
    json_encoder,
)
from powerflow_ingest import metrics
from powerflow_ingest.inbox import Inbox
from powerflow_ingest.mqtt import Inbound

log = get_logger(__name__)

# A full stream frees space only as fast as its consumer acks: retrying faster than every
# few seconds would only add load to a server that is already at its limit.
FULL_STREAM_BACKOFF_CAP_S = 5.0


@dataclass(slots=True)
class Outgoing:
    """What one gathered batch becomes: publishes to make, then messages to ack."""

    readings: list[Reading] = field(default_factory=list)
    rejections: list[tuple[Inbound, Rejected]] = field(default_factory=list)
    messages: list[Inbound] = field(default_factory=list)


def sort_batch(
    inbound: Sequence[Inbound], formats: Sequence[PayloadFormat], limits: Limits, now: datetime
) -> Outgoing:
    """Decode every message of a batch into readings, rejections or nothing; never raises."""
    out = Outgoing(messages=list(inbound))
    for message in inbound:
        fmt = find_format(formats, message.topic)
        metrics.MESSAGES_RECEIVED.labels(fmt.name if fmt else "none").inc()
        try:
            readings = decode_message(
                formats, message.topic, message.payload, now, limits, retained=message.retain
            )
        except Rejected as exc:
            out.rejections.append((message, exc))
        except Ignored as exc:
            metrics.MESSAGES_IGNORED.labels(exc.reason).inc()
        else:
            out.readings.extend(readings)
    return out


class Bridge:
    """Moves gathered MQTT messages into JetStream with bounded concurrency and retries."""

    def __init__(
        self,
        *,
        js: JetStreamContext,
        names: Names,
        partition: str,
        formats: Sequence[PayloadFormat],
        limits: Limits,
        ack: Callable[[Inbound], object],
        batch_max_messages: int,
        batch_linger_s: float,
        max_in_flight: int,
        publish_timeout_s: float,
        rejected_payload_max_bytes: int = REJECTED_PAYLOAD_LIMIT,
    ) -> None:
        self._js = js
        self._names = names
        self._partition = partition
        self._formats = formats
        self._limits = limits
        self._ack = ack
        self._batch_max = batch_max_messages
        self._linger_s = batch_linger_s
        self._slots = asyncio.Semaphore(max_in_flight)
        self._publish_timeout_s = publish_timeout_s
        self._rejected_payload_max = rejected_payload_max_bytes
        self._tasks: set[asyncio.Task[None]] = set()
        self._unacked = 0
        self._held_full = 0  # publishes now waiting for space in a full stream

    async def run(self, inbox: Inbox, stop: asyncio.Event) -> None:
        """Gather, decode and publish until ``stop`` is set; then finish what is in flight."""
        # Unacknowledged at the broker: what is being published and what waits in the inbox
        # (behind a full stream, most of it waits there: the in-flight slots are all taken).
        metrics.UNACKED_MESSAGES.set_function(lambda: self._unacked + len(inbox))
        while not stop.is_set():
            batch = await inbox.get_batch(self._batch_max, self._linger_s)
            if not batch:
                continue
            self._unacked += len(batch)
            out = sort_batch(batch, self._formats, self._limits, datetime.now(UTC))
            await self._slots.acquire()
            task = asyncio.create_task(self._deliver(out))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _deliver(self, out: Outgoing) -> None:
        try:
            publishes = [self._publish_rejection(m, exc) for m, exc in out.rejections]
            for start in range(0, len(out.readings), MAX_READINGS_PER_MESSAGE):
                publishes.append(
                    self._publish_readings(out.readings[start : start + MAX_READINGS_PER_MESSAGE])
                )
            await asyncio.gather(*publishes)
            for message in out.messages:
                self._ack(message)
            self._unacked -= len(out.messages)
        finally:
            self._slots.release()

    async def _publish_readings(self, readings: list[Reading]) -> None:
        body = json_encoder.encode(
            ReadingBatch(readings=readings, ingested_at=datetime.now(UTC), source=self._partition)
        )
        await self._publish(
            self._names.readings_subject(self._partition), body, readings_msg_id(readings)
        )
        metrics.READINGS_PUBLISHED.inc(len(readings))
        metrics.BATCHES_PUBLISHED.inc()

    async def _publish_rejection(self, message: Inbound, exc: Rejected) -> None:
        record = rejection_record(
            exc,
            topic=message.topic,
            payload=message.payload,
            received_at=message.received_at,
            payload_limit=self._rejected_payload_max,
        )
        await self._publish(
            self._names.rejected_subject(exc.reason),
            json_encoder.encode(record),
            rejection_msg_id(message.topic, message.payload, exc.reason),
        )
        metrics.MESSAGES_REJECTED.labels(exc.reason).inc()
        log.info(
            "message_rejected",
            reason=exc.reason,
            detail=exc.detail[:200],
            topic=message.topic,
            size=len(message.payload),
        )

    async def _publish(self, subject: str, body: bytes, msg_id: str) -> None:
        """Publish until JetStream acknowledges; the retried id makes a repeat harmless."""
        attempt = 0
        held_full = False
        while True:
            started = time.perf_counter()
            try:
                ack = await self._js.publish(
                    subject,
                    body,
                    timeout=self._publish_timeout_s,
                    headers={"Nats-Msg-Id": msg_id},
                )
            except Exception as exc:  # any failure: keep the MQTT message unacked and retry
                metrics.PUBLISH_FAILURES.inc()
                delay = jittered_delay(attempt, base_s=0.2, cap_s=FULL_STREAM_BACKOFF_CAP_S)
                if is_stream_full(exc):
                    # NATS answers, the stream is at its byte limit (discard-new): hold.
                    if not held_full:
                        held_full = True
                        self._held_full += 1
                        metrics.STREAM_FULL.set(1)
                    if attempt == 0 or attempt % 10 == 0:
                        log.error(
                            "jetstream_stream_full",
                            subject=subject,
                            error=str(exc),
                            attempt=attempt,
                            retry_in_s=round(delay, 2),
                            consequence="MQTT messages stay unacknowledged at the broker"
                            " until the writer frees space",
                        )
                else:
                    metrics.NATS_CONNECTED.set(0)
                    if attempt == 0 or attempt % 10 == 0:
                        log.error(
                            "jetstream_publish_failed",
                            subject=subject,
                            error=str(exc) or type(exc).__name__,
                            attempt=attempt,
                            retry_in_s=round(delay, 2),
                        )
                attempt += 1
                await asyncio.sleep(delay)
                continue
            metrics.PUBLISH_LATENCY.observe(time.perf_counter() - started)
            metrics.NATS_CONNECTED.set(1)
            if held_full:
                self._held_full -= 1
                if not self._held_full:
                    metrics.STREAM_FULL.set(0)
            if attempt:
                log.warning("jetstream_publish_recovered", subject=subject, attempts=attempt)
            count_duplicate(ack, subject, msg_id)
            return


def count_duplicate(ack: PubAck, subject: str, msg_id: str) -> bool:
    """Count (and say) a publish JetStream already had: a retry, or a redelivered MQTT batch."""
    if not ack.duplicate:
        return False
    metrics.DUPLICATE_PUBLISHES.labels(id_kind(msg_id)).inc()
    log.info("jetstream_duplicate_publish", subject=subject, msg_id=msg_id, stream=ack.stream)
    return True
