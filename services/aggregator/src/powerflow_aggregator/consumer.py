"""The aggregator's edge: pull PERSISTED messages, recompute their buckets, then ack.

A message is acked only after every bucket it names was recomputed and committed; a crash
means redelivery, which is a harmless recompute. Redelivery is bounded (``max_deliver``) and
what exhausts it is dead-lettered to REJECTED with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy import Engine

from powerflow_aggregator import metrics
from powerflow_aggregator.rollup import (
    TRANSIENT_DB_ERRORS,
    LockTimeout,
    RecomputeResult,
    RollupConfig,
    recompute_buckets,
)
from powerflow_common.backoff import jittered_delay
from powerflow_common.logs import get_logger
from powerflow_common.settings import Settings
from powerflow_common.wire import (
    REJECTED_PAYLOAD_LIMIT,
    Bucket,
    Persisted,
    Rejection,
    json_encoder,
    persisted_decoder,
)

log = get_logger(__name__)

TRANSIENT_ERRORS = (*TRANSIENT_DB_ERRORS, LockTimeout, OSError, TimeoutError)


async def ensure_aggregator_consumer(js: JetStreamContext, settings: Settings) -> None:
    """Create or update the durable pull consumer shared by every aggregator copy."""
    names = settings.names
    config = ConsumerConfig(
        durable_name=names.aggregator_consumer,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.aggregator_ack_wait_s,
        max_deliver=settings.aggregator_max_deliver,
        max_ack_pending=10_000,
        filter_subject=names.persisted_subject,
    )
    await js.add_consumer(names.persisted_stream, config)


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

    async def run(self, stop: asyncio.Event) -> None:
        """Process batches until ``stop`` is set; finishes the batch in hand first."""
        names = self._names
        sub = await self._js.pull_subscribe_bind(
            names.aggregator_consumer, stream=names.persisted_stream
        )
        advisory = await self._nc.subscribe(
            f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{names.persisted_stream}."
            f"{names.aggregator_consumer}",
            queue=f"{names.aggregator_consumer}-dlq",
            cb=self._on_max_deliveries,
        )
        metrics.DATABASE_UP.set(1)
        try:
            while not stop.is_set():
                messages = await self._fetch(sub)
                if messages:
                    await self._process(messages)
        finally:
            await advisory.unsubscribe()

    async def _fetch(self, sub: JetStreamContext.PullSubscription) -> list[Msg]:
        try:
            return await sub.fetch(self._settings.aggregator_batch_max_messages, timeout=0.5)
        except (NatsTimeoutError, TimeoutError):
            return []
        except Exception as exc:  # NATS away: say so, wait, try again
            log.error("jetstream_fetch_failed", error=str(exc) or type(exc).__name__)
            await asyncio.sleep(jittered_delay(0, 0.5, 2.0))
            return []

    async def _process(self, messages: list[Msg]) -> None:
        decoded: list[tuple[Msg, Persisted]] = []
        for msg in messages:
            if msg.metadata.num_delivered > 1:
                metrics.REDELIVERIES.inc()
            try:
                decoded.append((msg, persisted_decoder.decode(msg.data)))
            except msgspec.DecodeError:
                await self._dead_letter(
                    "undecodable_persisted",
                    "a PERSISTED message that is not a list of buckets",
                    msg.data,
                    f"a-u-{msg.metadata.sequence.stream}",
                )
                await msg.term()
        if not decoded:
            return
        buckets = {b for _, persisted in decoded for b in persisted.buckets}
        started = time.perf_counter()
        try:
            async with self._keep_in_progress([m for m, _ in decoded]):
                result = await self._recompute(buckets)
        except Exception as exc:
            # Not an outage: something about these messages. They come back later, a bounded
            # number of times; the max-deliveries advisory dead-letters them after that.
            log.exception("batch_failed", error=str(exc)[:300], messages=len(decoded))
            for msg, _ in decoded:
                await msg.nak(delay=min(60.0, 2.0**msg.metadata.num_delivered))
            return
        metrics.RECOMPUTE_LATENCY.observe(time.perf_counter() - started)
        metrics.BUCKETS_RECOMPUTED.inc(result.recomputed)
        metrics.FOLLOW_ON_BUCKETS.inc(result.follow_on)
        metrics.MISSING_FACTOR.inc(result.missing_factor)
        failed = {bucket for bucket, _ in result.failed}
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
        for msg, persisted in decoded:
            if failed.intersection(persisted.buckets):
                await msg.nak(delay=min(60.0, 2.0**msg.metadata.num_delivered))
                continue
            lag_s = max(0.0, (now - persisted.committed_at).total_seconds())
            metrics.LAG_SECONDS.set(lag_s)
            metrics.LAG_HISTOGRAM.observe(lag_s)
            await msg.ack()

    async def _recompute(self, buckets: set[Bucket]) -> RecomputeResult:
        """Recompute, waiting out database outages and busy locks with the messages in hand."""
        attempt = 0
        while True:
            try:
                result = await asyncio.to_thread(
                    recompute_buckets, self._engine, buckets, self._config
                )
            except TRANSIENT_ERRORS as exc:
                if not isinstance(exc, LockTimeout):
                    metrics.DATABASE_UP.set(0)
                else:
                    metrics.LOCK_TIMEOUTS.inc()
                delay = jittered_delay(attempt, base_s=0.25, cap_s=5.0)
                if attempt == 0 or attempt % 10 == 0:
                    log.error(
                        "recompute_failed",
                        error=str(exc)[:300] or type(exc).__name__,
                        attempt=attempt,
                        retry_in_s=round(delay, 2),
                        buckets=len(buckets),
                    )
                attempt += 1
                await asyncio.sleep(delay)
                continue
            if attempt:
                metrics.DATABASE_UP.set(1)
                log.warning("recompute_recovered", attempts=attempt)
            return result

    @contextlib.asynccontextmanager
    async def _keep_in_progress(self, messages: list[Msg]) -> AsyncIterator[None]:
        """Tell JetStream we are still working, so a long recompute is not redelivered elsewhere."""

        async def beat() -> None:
            while True:
                await asyncio.sleep(self._settings.aggregator_ack_wait_s / 3)
                for msg in messages:
                    # NATS may be away; a redelivery then is only a harmless recompute.
                    with contextlib.suppress(Exception):
                        await msg.in_progress()

        task = asyncio.create_task(beat())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _dead_letter(self, reason: str, detail: str, payload: bytes, msg_id: str) -> None:
        metrics.DEAD_LETTERED.labels(reason).inc()
        log.warning("dead_lettered", reason=reason, detail=detail[:200])
        record = Rejection(
            reason=reason,
            detail=detail[:500],
            stage="aggregator",
            received_at=datetime.now(UTC),
            size=len(payload),
            sha256=hashlib.sha256(payload).hexdigest(),
            payload=payload[:REJECTED_PAYLOAD_LIMIT],
            truncated=len(payload) > REJECTED_PAYLOAD_LIMIT,
        )
        attempt = 0
        while True:
            try:
                await self._js.publish(
                    self._names.rejected_subject(reason),
                    json_encoder.encode(record),
                    headers={"Nats-Msg-Id": msg_id},
                )
                return
            except Exception as exc:  # NATS away: a dead letter is never dropped unseen
                if attempt % 10 == 0:
                    log.error("publish_rejection_failed", error=str(exc) or type(exc).__name__)
                attempt += 1
                await asyncio.sleep(jittered_delay(attempt, base_s=0.25, cap_s=5.0))

    async def _on_max_deliveries(self, advisory: Msg) -> None:
        """A message that exhausted its deliveries is dead-lettered whole, never dropped unseen."""
        try:
            event = json.loads(advisory.data)
            seq = int(event["stream_seq"])
            stored = await self._js.get_msg(self._names.persisted_stream, seq)
        except Exception as exc:
            log.error("max_deliveries_advisory_unreadable", error=str(exc))
            return
        await self._dead_letter(
            "max_deliver_exceeded",
            f"PERSISTED message {seq} was delivered {event.get('deliveries')} times "
            "without its buckets being recomputed",
            stored.data or b"",
            f"a-m-{self._names.persisted_stream}-{seq}",
        )
