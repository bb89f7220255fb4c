"""The writer's edge: pull READINGS batches, store them, announce PERSISTED, then ack.

Order matters (DESIGN.md, guarantee 3): commit, publish PERSISTED and await its ack, then
ack READINGS. A crash anywhere means redelivery: a no-op for rows, a harmless recompute.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from sqlalchemy import Engine

from powerflow_common.consumers import (
    TRANSIENT_DB_ERRORS,
    DeadLetters,
    consume,
    ensure_pull_consumer,
    fetch,
    keep_in_progress,
    nak_delay_s,
    retry_transient,
)
from powerflow_common.logs import get_logger
from powerflow_common.settings import Settings
from powerflow_common.wire import Persisted, Reading, batch_decoder, json_encoder
from powerflow_writer import metrics
from powerflow_writer.store import StoreResult, store_readings

log = get_logger(__name__)

MAX_MESSAGES_PER_FETCH = 100
Fetched = tuple[Msg, list[Reading] | None]


async def ensure_writer_consumer(js: JetStreamContext, settings: Settings) -> None:
    """Create or update the durable pull consumer shared by every writer copy."""
    names = settings.names
    await ensure_pull_consumer(
        js,
        stream=names.readings_stream,
        durable=names.writer_consumer,
        filter_subject=names.readings_wildcard,
        ack_wait_s=settings.writer_ack_wait_s,
        max_deliver=settings.writer_max_deliver,
    )


def _database_down(exc: BaseException) -> None:
    if isinstance(exc, TRANSIENT_DB_ERRORS):
        metrics.DATABASE_UP.set(0)


def _database_up() -> None:
    metrics.DATABASE_UP.set(1)


class Writer:
    """One writer copy: pulls, stores, announces and acks, with retries that never lose data."""

    def __init__(self, *, nc: NATS, js: JetStreamContext, engine: Engine, settings: Settings):
        self._nc = nc
        self._js = js
        self._engine = engine
        self._settings = settings
        self._names = settings.names
        self._max_gap = timedelta(seconds=settings.max_gap_s)
        self._dead_letters = DeadLetters(
            js, self._names, stage="writer", count=lambda r: metrics.DEAD_LETTERED.labels(r).inc()
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Process batches until ``stop`` is set; finishes the batch in hand first."""
        metrics.DATABASE_UP.set(1)
        await consume(
            self._js,
            self._nc,
            stream=self._names.readings_stream,
            durable=self._names.writer_consumer,
            dead_letters=self._dead_letters,
            stop=stop,
            pull=self._fetch,
            handle=self._process,
        )

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
            got = await fetch(sub, MAX_MESSAGES_PER_FETCH, timeout)
            if not got:
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

    async def _process(self, fetched: Sequence[Fetched]) -> None:
        readings: list[Reading] = []
        good: list[Msg] = []
        for msg, batch in fetched:
            if msg.metadata.num_delivered > 1:
                metrics.REDELIVERIES.inc()
            if batch is None:
                await self._dead_letters.send(
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
            async with keep_in_progress(good, self._settings.writer_ack_wait_s / 3):
                await self._commit(good, readings)
        except Exception as exc:
            # Not an outage: something about this batch. Let it come back later, a bounded
            # number of times; the max-deliveries advisory dead-letters it after that.
            log.exception("batch_failed", error=str(exc)[:300], messages=len(good))
            for msg in good:
                await msg.nak(delay=nak_delay_s(msg))

    async def _commit(self, good: list[Msg], readings: list[Reading]) -> None:
        started = time.perf_counter()
        result = await retry_transient(
            "store",
            lambda: asyncio.to_thread(self._store, readings),
            on_failure=_database_down,
            on_recovery=_database_up,
            batch_messages=len(good),
        )
        metrics.COMMIT_LATENCY.observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.observe(len(readings))
        metrics.ROWS_WRITTEN.inc(result.inserted)
        metrics.DUPLICATES.inc(result.duplicates)
        metrics.CONFLICTS.inc(result.conflicts)
        for reading, error in result.refused:
            metrics.ROWS_REFUSED.inc()
            payload = json_encoder.encode(reading)
            await self._dead_letters.send(
                "db_refused",
                error,
                payload,
                f"d-{reading.device_code}-{reading.ts.isoformat()}",
                reading=reading,
            )
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
            await retry_transient(
                "publish_persisted",
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
