"""The writer's edge: pull READINGS batches, store them, announce PERSISTED, then ack.

Order matters (docs/architecture.md, guarantee 3): commit, publish PERSISTED and await its ack, then
ack READINGS. A crash anywhere means redelivery: a no-op for rows, a harmless recompute.

Whatever one message does, the others are stored: a batch that fails on its own (not an
outage) is halved until the failing message stands alone, and every other message is
stored in the same pass. A message delivered more than once is handled in a batch of its
own, so one that kills the process cannot drag its neighbours to the delivery limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from sqlalchemy import Engine

from powerflow_common.admission import LEGACY_NOT_ENROLLED, LEGACY_TOPIC
from powerflow_common.consumers import (
    TRANSIENT_DB_ERRORS,
    DeadLetters,
    consume,
    dead_letter_id,
    ensure_pull_consumer,
    fetch,
    keep_in_progress,
    redelivery_order,
    retry_transient,
    settle,
)
from powerflow_common.db.horizon import BEYOND_RETENTION
from powerflow_common.logs import get_logger
from powerflow_common.msgids import content_id
from powerflow_common.settings import Settings
from powerflow_common.wire import Persisted, Reading, batch_decoder, json_encoder
from powerflow_writer import metrics
from powerflow_writer.store import CONFLICTS_LOGGED_PER_BATCH, StoreResult, store_readings

log = get_logger(__name__)

MAX_MESSAGES_PER_FETCH = 100
Fetched = tuple[Msg, list[Reading] | None]
Decoded = tuple[Msg, list[Reading]]


async def ensure_writer_consumer(js: JetStreamContext, settings: Settings) -> None:
    """Create or update the durable pull consumer shared by every writer copy."""
    names = settings.names
    await ensure_pull_consumer(
        js,
        stream=names.readings_stream,
        durable=names.writer_consumer,
        filter_subject=names.readings_wildcard,
        ack_wait_s=settings.writer_ack_wait_s,
    )


def _position(item: Decoded) -> tuple[int, int]:
    return item[0].metadata.sequence.stream, item[0].metadata.num_delivered


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
            js,
            self._names,
            stage="writer",
            max_deliver=settings.writer_max_deliver,
            payload_limit=settings.rejected_payload_max_bytes,
            count=lambda r: metrics.DEAD_LETTERED.labels(r).inc(),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Process batches until ``stop`` is set; finishes the batch in hand first."""
        metrics.DATABASE_UP.set(1)
        await consume(
            self._js,
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
            for msg in await self._dead_letters.screen(got):
                try:
                    batch: list[Reading] | None = batch_decoder.decode(msg.data).readings
                except msgspec.DecodeError:
                    batch = None
                fetched.append((msg, batch))
                readings += len(batch or ())
        return fetched

    async def _process(self, fetched: Sequence[Fetched]) -> None:
        fresh: list[Decoded] = []
        again: list[Decoded] = []
        for msg, batch in fetched:
            if batch is None:
                await self._dead_letters.send(
                    "undecodable_batch",
                    "a READINGS message that is not a reading batch",
                    msg.data,
                    dead_letter_id("u", msg),
                )
                await settle("term", msg, msg.term)
            elif msg.metadata.num_delivered > 1:
                metrics.REDELIVERIES.inc()
                again.append((msg, batch))
            else:
                fresh.append((msg, batch))
        # Every message in hand stays in progress until its turn comes, however long the
        # split or an outage takes. Fresh ones first: a redelivered one may be what killed
        # the last process.
        in_hand = [msg for msg, _ in (*fresh, *again)]
        async with keep_in_progress(in_hand, self._settings.writer_ack_wait_s / 3):
            if fresh:
                await self._isolate(fresh)
            for one in redelivery_order(again, _position):
                await self._isolate([one])

    async def _isolate(self, group: list[Decoded]) -> None:
        """Store ``group``; on a failure of its own, halve it until the culprit stands alone."""
        try:
            await self._commit(group)
        except Exception as exc:
            # Not an outage (those are waited out in _commit): something in these messages.
            error = f"{type(exc).__name__}: {exc}"[:500]
            if len(group) == 1:
                msg = group[0][0]
                metrics.MESSAGES_FAILED.inc()
                log.exception(
                    "message_failed",
                    error=error,
                    sequence=msg.metadata.sequence.stream,
                    delivered=msg.metadata.num_delivered,
                    limit=self._dead_letters.max_deliver,
                )
                await self._dead_letters.retry_or_give_up(msg, error)
                return
            metrics.BATCH_SPLITS.inc()
            log.warning("batch_failed_splitting", error=error, messages=len(group))
            middle = len(group) // 2
            await self._isolate(group[:middle])
            await self._isolate(group[middle:])

    async def _commit(self, group: list[Decoded]) -> None:
        readings = [r for _, batch in group for r in batch]
        started = time.perf_counter()
        result = await retry_transient(
            "store",
            lambda: asyncio.to_thread(self._store, readings),
            on_failure=_database_down,
            on_recovery=_database_up,
            batch_messages=len(group),
        )
        metrics.COMMIT_LATENCY.observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.observe(len(readings))
        metrics.ROWS_WRITTEN.inc(result.inserted)
        metrics.DUPLICATES.inc(result.duplicates)
        _log_conflicts(result)
        for reading, error in result.refused:
            metrics.ROWS_REFUSED.inc()
            payload = json_encoder.encode(reading)
            await self._dead_letters.send(
                "db_refused", error, payload, content_id("d", payload), reading=reading
            )
        for reading in result.not_enrolled:
            payload = json_encoder.encode(reading)
            await self._dead_letters.send(
                LEGACY_NOT_ENROLLED,
                _not_enrolled_detail(reading.device_code),
                payload,
                content_id("l", payload),
                reading=reading,
                topic=reading.topic,
            )
        for reading in result.beyond_retention:
            payload = json_encoder.encode(reading)
            await self._dead_letters.send(
                BEYOND_RETENTION,
                _beyond_retention_detail(reading),
                payload,
                content_id("b", payload),
                reading=reading,
            )
        _count_waiting(result)
        if result.buckets:
            await self._announce(group, result)
        for msg, _ in group:
            await settle("ack", msg, msg.ack)

    async def _announce(self, group: list[Decoded], result: StoreResult) -> None:
        """Publish PERSISTED for a committed group and await its ack."""
        buckets = json_encoder.encode(result.buckets)  # sorted by store_readings
        body = json_encoder.encode(
            Persisted(buckets=result.buckets, rows=result.inserted, committed_at=datetime.now(UTC))
        )
        # The buckets and the READINGS messages they came from: a retried commit of the same
        # messages is dropped as a duplicate, and two commits touching the same hours are
        # never (buckets alone would collide: every small batch of one device in one hour).
        sources = b",".join(str(msg.metadata.sequence.stream).encode() for msg, _ in group)
        msg_id = content_id("p", buckets, sources)
        await retry_transient(
            "publish_persisted",
            lambda: self._js.publish(
                self._names.persisted_subject, body, headers={"Nats-Msg-Id": msg_id}
            ),
        )

    def _store(self, readings: list[Reading]) -> StoreResult:
        return store_readings(
            self._engine,
            readings,
            received_at=datetime.now(UTC),
            max_gap=self._max_gap,
            device_clock_timezone=self._settings.device_clock_timezone,
        )


def _not_enrolled_detail(code: str) -> str:
    return (
        f"{LEGACY_TOPIC} names the device only in its payload, and device {code[:64]!r} is not "
        "enrolled for it (unknown, not legacy, or revoked): the device publishes on its own "
        "topic, or an operator enrols it as legacy (docs/devices.md)"
    )


def _beyond_retention_detail(reading: Reading) -> str:
    return (
        f"reading at {reading.ts.isoformat()} is for an hour before the raw horizon: that hour "
        "is frozen (its stats are final, its raw readings may be gone; POWERFLOW_RAW_RETENTION_"
        'DAYS, docs/operations.md "Retention and partitions"), so it is not stored'
    )


def _count_waiting(result: StoreResult) -> None:
    """Devices first seen by this batch wait for admission: counted, and each said once."""
    metrics.WAITING_READINGS.inc(result.waiting_readings)
    if not result.new_waiting:
        return
    metrics.WAITING_DEVICES.inc(len(result.new_waiting))
    for code in result.new_waiting[:CONFLICTS_LOGGED_PER_BATCH]:
        log.warning(
            "device_waiting_for_admission",
            device_code=code,
            counted="in no total until admitted",
            fix=f"powerflow devices admit {code}",
        )
    if len(result.new_waiting) > CONFLICTS_LOGGED_PER_BATCH:
        log.warning(
            "devices_waiting_not_logged",
            devices=len(result.new_waiting),
            logged=CONFLICTS_LOGGED_PER_BATCH,
        )


def _log_conflicts(result: StoreResult) -> None:
    """Count every conflict; log the first few of a batch with both values."""
    conflicts = result.conflict_log
    if not conflicts.count:
        return
    metrics.CONFLICTS.inc(conflicts.count)
    for c in conflicts.samples:
        log.warning(
            "reading_conflict",
            device_code=c.device_code,
            ts=c.ts.isoformat(),
            column=c.column,
            stored=c.stored,
            incoming=c.incoming,
            kept="stored",
        )
    if conflicts.unlogged:
        log.warning(
            "reading_conflicts_not_logged",
            readings=conflicts.count,
            logged_columns=len(conflicts.samples),
            unlogged_columns=conflicts.unlogged,
        )
