"""The aggregator's edge: pull PERSISTED messages, recompute their buckets, then ack.

A message is acked only after every bucket it names was recomputed and committed; a crash
means redelivery, which is a harmless recompute. Redelivery is bounded by the worker's own
count (``aggregator_max_deliver``) and what exhausts it is dead-lettered to REJECTED with its
reason. A message delivered more than once is recomputed in a batch of its own, so one that
fails (or kills the process) does not hold back the buckets of its neighbours.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from sqlalchemy import Engine

from powerflow_aggregator import metrics
from powerflow_aggregator.rollup import (
    LockTimeout,
    RecomputeResult,
    RollupConfig,
    recompute_buckets,
)
from powerflow_common.consumers import (
    TRANSIENT_ERRORS,
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
from powerflow_common.logs import get_logger
from powerflow_common.msgids import content_id
from powerflow_common.settings import Settings
from powerflow_common.wire import Bucket, Persisted, RolledUp, json_encoder, persisted_decoder

log = get_logger(__name__)

# A busy bucket lock is waited out like an outage.
RECOMPUTE_TRANSIENT = (*TRANSIENT_ERRORS, LockTimeout)


async def ensure_aggregator_consumer(js: JetStreamContext, settings: Settings) -> None:
    """Create or update the durable pull consumer shared by every aggregator copy."""
    names = settings.names
    await ensure_pull_consumer(
        js,
        stream=names.persisted_stream,
        durable=names.aggregator_consumer,
        filter_subject=names.persisted_subject,
        ack_wait_s=settings.aggregator_ack_wait_s,
    )


def _position(item: tuple[Msg, Persisted]) -> tuple[int, int]:
    return item[0].metadata.sequence.stream, item[0].metadata.num_delivered


def _recompute_failed(exc: BaseException) -> None:
    if isinstance(exc, LockTimeout):
        metrics.LOCK_TIMEOUTS.inc()
    else:
        metrics.DATABASE_UP.set(0)


def _recompute_recovered() -> None:
    metrics.DATABASE_UP.set(1)


class Aggregator:
    """One aggregator copy: pulls, recomputes, acks; several copies share one consumer."""

    def __init__(
        self,
        *,
        nc: NATS,
        js: JetStreamContext,
        engine: Engine,
        settings: Settings,
        config: RollupConfig,
    ) -> None:
        self._nc = nc
        self._js = js
        self._engine = engine
        self._settings = settings
        self._config = config
        self._names = settings.names
        self._dead_letters = DeadLetters(
            js,
            self._names,
            stage="aggregator",
            max_deliver=settings.aggregator_max_deliver,
            payload_limit=settings.rejected_payload_max_bytes,
            count=lambda r: metrics.DEAD_LETTERED.labels(r).inc(),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Process batches until ``stop`` is set; finishes the batch in hand first."""
        metrics.DATABASE_UP.set(1)
        await consume(
            self._js,
            stream=self._names.persisted_stream,
            durable=self._names.aggregator_consumer,
            dead_letters=self._dead_letters,
            stop=stop,
            pull=self._fetch,
            handle=self._process,
        )

    async def _fetch(self, sub: JetStreamContext.PullSubscription) -> list[Msg]:
        got = await fetch(sub, self._settings.aggregator_batch_max_messages, 0.5)
        return await self._dead_letters.screen(got)

    async def _process(self, messages: Sequence[Msg]) -> None:
        fresh: list[tuple[Msg, Persisted]] = []
        again: list[tuple[Msg, Persisted]] = []
        for msg in messages:
            try:
                persisted = persisted_decoder.decode(msg.data)
            except msgspec.DecodeError:
                await self._dead_letters.send(
                    "undecodable_persisted",
                    "a PERSISTED message that is not a list of buckets",
                    msg.data,
                    dead_letter_id("u", msg),
                )
                await settle("term", msg, msg.term)
                continue
            if msg.metadata.num_delivered > 1:
                metrics.REDELIVERIES.inc()
                again.append((msg, persisted))
            else:
                fresh.append((msg, persisted))
        every_s = self._settings.aggregator_ack_wait_s / 3
        async with keep_in_progress([m for m, _ in (*fresh, *again)], every_s):
            if fresh:
                await self._handle(fresh)
            for one in redelivery_order(again, _position):
                await self._handle([one])

    async def _handle(self, decoded: list[tuple[Msg, Persisted]]) -> None:
        buckets = {b for _, persisted in decoded for b in persisted.buckets}
        started = time.perf_counter()
        try:
            result = await self._recompute(buckets)
        except Exception as exc:
            # Not an outage: something about these messages. They come back later (each in a
            # batch of its own) until the delivery limit, then they are dead-lettered.
            error = f"{type(exc).__name__}: {exc}"[:500]
            log.exception("batch_failed", error=error, messages=len(decoded))
            for msg, _ in decoded:
                await self._dead_letters.retry_or_give_up(msg, error)
            return
        metrics.RECOMPUTE_LATENCY.observe(time.perf_counter() - started)
        metrics.BUCKETS_RECOMPUTED.inc(result.recomputed)
        metrics.FOLLOW_ON_BUCKETS.inc(result.follow_on)
        metrics.MISSING_FACTOR.inc(result.missing_factor)
        failed = dict(result.failed)
        for bucket, error in result.failed:
            metrics.BUCKETS_FAILED.inc()
            log.error(
                "bucket_failed",
                device_id=bucket.device_id,
                hour_start=bucket.hour_start.isoformat(),
                error=error,
            )
        if result.missing_factor:
            log.warning(
                "emission_factor_missing",
                hours=result.missing_factor,
                factor_set=self._config.factor_set,
            )
        now = datetime.now(UTC)
        await self._announce_rolled_up(buckets - set(failed), now)
        for msg, persisted in decoded:
            mine = [failed[b] for b in persisted.buckets if b in failed]
            if mine:
                await self._dead_letters.retry_or_give_up(msg, f"bucket failed: {mine[0]}")
                continue
            lag_s = max(0.0, (now - persisted.committed_at).total_seconds())
            metrics.LAG_SECONDS.set(lag_s)
            metrics.LAG_HISTOGRAM.observe(lag_s)
            await settle("ack", msg, msg.ack)

    # Alerts: the base-load and daily rules run when their hours are rolled up.
    async def _announce_rolled_up(self, buckets: set[Bucket], now: datetime) -> None:
        """Publish the committed buckets on ROLLUPS (before the acks: a crash re-announces)."""
        if not buckets:
            return
        ordered = sorted(buckets, key=lambda b: (b.device_id, b.hour_start))
        body = json_encoder.encode(RolledUp(buckets=ordered, rolled_up_at=now))
        msg_id = content_id("rolledup", json_encoder.encode(ordered))
        subject = self._names.rollups_subject
        await retry_transient(
            "publish_rolled_up",
            lambda: self._js.publish(subject, body, headers={"Nats-Msg-Id": msg_id}),
            buckets=len(ordered),
        )

    async def _recompute(self, buckets: set[Bucket]) -> RecomputeResult:
        """Recompute, waiting out database outages and busy locks with the messages in hand."""
        return await retry_transient(
            "recompute",
            lambda: asyncio.to_thread(recompute_buckets, self._engine, buckets, self._config),
            transient=RECOMPUTE_TRANSIENT,
            on_failure=_recompute_failed,
            on_recovery=_recompute_recovered,
            buckets=len(buckets),
        )
