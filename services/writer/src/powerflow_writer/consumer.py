"""The writer's edge: pull READINGS batches, store them, announce PERSISTED, then ack.

Order matters (DESIGN.md, guarantee 3): commit, publish PERSISTED and await its ack, then
ack READINGS. A crash anywhere means redelivery: a no-op for rows, a harmless recompute.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from powerflow_common.backoff import jittered_delay
from powerflow_common.logs import get_logger
from powerflow_common.settings import Settings
from powerflow_common.wire import (
    REJECTED_PAYLOAD_LIMIT,
    Persisted,
    Reading,
    Rejection,
    batch_decoder,
    json_encoder,
)
from powerflow_writer import metrics
from powerflow_writer.store import StoreResult, store_readings

log = get_logger(__name__)

MAX_MESSAGES_PER_FETCH = 100
T = TypeVar("T")
# Outages worth waiting out with the batch in hand; anything else is the batch's own fault.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, NatsError, OSError, TimeoutError)
Fetched = tuple[Msg, list[Reading] | None]


async def ensure_writer_consumer(js: JetStreamContext, settings: Settings) -> None:
    """Create or update the durable pull consumer shared by every writer copy."""
    names = settings.names
    config = ConsumerConfig(
        durable_name=names.writer_consumer,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.writer_ack_wait_s,
        max_deliver=settings.writer_max_deliver,
        max_ack_pending=10_000,
        filter_subject=names.readings_wildcard,
    )
    await js.add_consumer(names.readings_stream, config)


class Writer:
    """One writer copy: pulls, stores, announces and acks, with retries that never lose data."""

    def __init__(self, *, nc: NATS, js: JetStreamContext, engine: Engine, settings: Settings):
        self._nc = nc
        self._js = js
        self._engine = engine
        self._settings = settings
        self._names = settings.names
        self._max_gap = timedelta(seconds=settings.max_gap_s)

    async def run(self, stop: asyncio.Event) -> None:
        """Process batches until ``stop`` is set; finishes the batch in hand first."""
        sub = await self._js.pull_subscribe_bind(
            self._names.writer_consumer, stream=self._names.readings_stream
        )
        advisory = await self._nc.subscribe(
            f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{self._names.readings_stream}."
            f"{self._names.writer_consumer}",
            queue=f"{self._names.writer_consumer}-dlq",
            cb=self._on_max_deliveries,
        )
        metrics.DATABASE_UP.set(1)
        try:
            while not stop.is_set():
                fetched = await self._fetch(sub)
                if fetched:
                    await self._process(fetched)
        finally:
            await advisory.unsubscribe()

    async def _fetch(self, sub: JetStreamContext.PullSubscription) -> list[Fetched]:
        """Messages up to ``writer_batch_max_readings`` readings or ``writer_batch_linger_ms``."""
        settings = self._settings
        fetched: list[Fetched] = []
        readings = 0
        deadline: float | None = None
        while readings < settings.writer_batch_max_readings:
            timeout = 0.5 if deadline is None else deadline - time.monotonic()
            if timeout <= 0.001:
                break
            try:
                got = await sub.fetch(MAX_MESSAGES_PER_FETCH, timeout=timeout)
            except (NatsTimeoutError, TimeoutError):
                break
            except Exception as exc:  # NATS away: say so, wait, try again
                log.error("jetstream_fetch_failed", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(jittered_delay(0, 0.5, 2.0))
                break
            if deadline is None:
                deadline = time.monotonic() + settings.writer_batch_linger_ms / 1000
            for msg in got:
                try:
                    batch: list[Reading] | None = batch_decoder.decode(msg.data).readings
                except msgspec.DecodeError:
                    batch = None
                fetched.append((msg, batch))
                readings += len(batch or ())
        return fetched

    async def _process(self, fetched: list[Fetched]) -> None:
        readings: list[Reading] = []
        good: list[Msg] = []
        for msg, batch in fetched:
            if msg.metadata.num_delivered > 1:
                metrics.REDELIVERIES.inc()
            if batch is None:
                await self._dead_letter(
                    "undecodable_batch",
                    "a READINGS message that is not a reading batch",
                    msg.data,
                    f"u-{msg.metadata.sequence.stream}",
                )
                await msg.term()
                continue
            readings.extend(batch)
            good.append(msg)
        if not good:
            return
        try:
            await self._commit(good, readings)
        except Exception as exc:
            # Not an outage: something about this batch. Let it come back later, a bounded
            # number of times; the max-deliveries advisory dead-letters it after that.
            log.exception("batch_failed", error=str(exc)[:300], messages=len(good))
            for msg in good:
                delay = min(60.0, 2.0**msg.metadata.num_delivered)
                await msg.nak(delay=delay)

    async def _commit(self, good: list[Msg], readings: list[Reading]) -> None:
        started = time.perf_counter()
        result = await self._retry("store", good, lambda: asyncio.to_thread(self._store, readings))
        metrics.COMMIT_LATENCY.observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.observe(len(readings))
        metrics.ROWS_WRITTEN.inc(result.inserted)
        metrics.DUPLICATES.inc(result.duplicates)
        metrics.CONFLICTS.inc(result.conflicts)
        for reading, error in result.refused:
            metrics.ROWS_REFUSED.inc()
            await self._dead_letter_reading(reading, error)
        if result.buckets:
            body = json_encoder.encode(
                Persisted(
                    buckets=result.buckets,
                    rows=result.inserted,
                    committed_at=datetime.now(UTC),
                )
            )
            msg_id = (
                "p-"
                + hashlib.sha256(
                    b",".join(str(m.metadata.sequence.stream).encode() for m in good)
                ).hexdigest()
            )
            await self._retry(
                "publish_persisted",
                good,
                lambda: self._js.publish(
                    self._names.persisted_subject, body, headers={"Nats-Msg-Id": msg_id}
                ),
            )
        for msg in good:
            await msg.ack()
        if result.conflicts:
            log.warning("conflicting_duplicates", count=result.conflicts)

    def _store(self, readings: list[Reading]) -> StoreResult:
        return store_readings(
            self._engine,
            readings,
            received_at=datetime.now(UTC),
            max_gap=self._max_gap,
            default_timezone=self._settings.default_timezone,
        )

    async def _retry(self, what: str, messages: list[Msg], action: Callable[[], Awaitable[T]]) -> T:
        """Retry ``action`` through outages until it succeeds, keeping ``messages`` ours."""
        attempt = 0
        last_progress = time.monotonic()
        while True:
            try:
                value = await action()
            except TRANSIENT_ERRORS as exc:
                if isinstance(exc, DBAPIError):
                    metrics.DATABASE_UP.set(0)
                delay = jittered_delay(attempt, base_s=0.25, cap_s=5.0)
                if attempt == 0 or attempt % 10 == 0:
                    log.error(
                        f"{what}_failed",
                        error=str(exc)[:300] or type(exc).__name__,
                        attempt=attempt,
                        retry_in_s=round(delay, 2),
                        batch_messages=len(messages),
                    )
                attempt += 1
                # Keep the batch ours while we wait, so it is not redelivered elsewhere.
                if time.monotonic() - last_progress > self._settings.writer_ack_wait_s / 3:
                    for msg in messages:
                        # NATS may be away too; a redelivery then is harmless.
                        with contextlib.suppress(Exception):
                            await msg.in_progress()
                    last_progress = time.monotonic()
                await asyncio.sleep(delay)
                continue
            if attempt:
                metrics.DATABASE_UP.set(1)
                log.warning(f"{what}_recovered", attempts=attempt)
            return value

    async def _dead_letter(self, reason: str, detail: str, payload: bytes, msg_id: str) -> None:
        record = Rejection(
            reason=reason,
            detail=detail[:500],
            stage="writer",
            received_at=datetime.now(UTC),
            size=len(payload),
            sha256=hashlib.sha256(payload).hexdigest(),
            payload=payload[:REJECTED_PAYLOAD_LIMIT],
            truncated=len(payload) > REJECTED_PAYLOAD_LIMIT,
        )
        await self._publish_rejection(record, msg_id)

    async def _dead_letter_reading(self, reading: Reading, error: str) -> None:
        payload = json_encoder.encode(reading)
        record = Rejection(
            reason="db_refused",
            detail=error,
            stage="writer",
            received_at=datetime.now(UTC),
            size=len(payload),
            sha256=hashlib.sha256(payload).hexdigest(),
            payload=payload,
            reading=reading,
        )
        await self._publish_rejection(record, f"d-{reading.device_code}-{reading.ts.isoformat()}")

    async def _publish_rejection(self, record: Rejection, msg_id: str) -> None:
        metrics.DEAD_LETTERED.labels(record.reason).inc()
        log.warning("dead_lettered", reason=record.reason, detail=record.detail[:200])
        await self._retry(
            "publish_rejection",
            [],
            lambda: self._js.publish(
                self._names.rejected_subject(record.reason),
                json_encoder.encode(record),
                headers={"Nats-Msg-Id": msg_id},
            ),
        )

    async def _on_max_deliveries(self, advisory: Msg) -> None:
        """A batch that exhausted its deliveries is dead-lettered whole, never dropped unseen."""
        try:
            event = json.loads(advisory.data)
            seq = int(event["stream_seq"])
            stored = await self._js.get_msg(self._names.readings_stream, seq)
        except Exception as exc:
            log.error("max_deliveries_advisory_unreadable", error=str(exc))
            return
        await self._dead_letter(
            "max_deliver_exceeded",
            f"READINGS message {seq} was delivered {event.get('deliveries')} times "
            "without being stored",
            stored.data or b"",
            f"m-{self._names.readings_stream}-{seq}",
        )
