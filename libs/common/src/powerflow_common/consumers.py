"""The edge every JetStream worker shares: durable consumers, outages waited out, dead letters.

Workers (writer, aggregator) keep only their handler and their order of steps; how to pull,
how to keep a batch while the database is away, and how to dead-letter is said once, here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from powerflow_common.backoff import jittered_delay
from powerflow_common.db.engine import make_engine
from powerflow_common.jetstream import close_nats, connect_nats, ensure_streams
from powerflow_common.logs import get_logger
from powerflow_common.names import Names
from powerflow_common.settings import Settings
from powerflow_common.wire import REJECTED_PAYLOAD_LIMIT, Reading, Rejection, json_encoder

log = get_logger(__name__)

T = TypeVar("T")

# Outages worth waiting out with the batch in hand; anything else is the batch's own fault.
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError)
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    *TRANSIENT_DB_ERRORS,
    NatsError,
    OSError,
    TimeoutError,
)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, so a worker finishes the batch in hand and stops."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def ensure_pull_consumer(
    js: JetStreamContext,
    *,
    stream: str,
    durable: str,
    filter_subject: str,
    ack_wait_s: float,
    max_deliver: int,
) -> None:
    """Create or update a durable pull consumer shared by every copy of a worker."""
    config = ConsumerConfig(
        durable_name=durable,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait_s,
        max_deliver=max_deliver,
        max_ack_pending=10_000,
        filter_subject=filter_subject,
    )
    await js.add_consumer(stream, config)


async def fetch(sub: JetStreamContext.PullSubscription, batch: int, timeout_s: float) -> list[Msg]:
    """Up to ``batch`` messages; none on a quiet stream, none (said loudly) while NATS is away."""
    try:
        return await sub.fetch(batch, timeout=timeout_s)
    except (NatsTimeoutError, TimeoutError):
        return []
    except Exception as exc:
        log.error("jetstream_fetch_failed", error=str(exc) or type(exc).__name__)
        await asyncio.sleep(jittered_delay(0, 0.5, 2.0))
        return []


@contextlib.asynccontextmanager
async def keep_in_progress(messages: Sequence[Msg], every_s: float) -> AsyncIterator[None]:
    """Tell JetStream we still work on ``messages``, so a long wait is not redelivered elsewhere."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every_s)
            for msg in messages:
                # NATS may be away too; a redelivery then is harmless (idempotent handlers).
                with contextlib.suppress(Exception):
                    await msg.in_progress()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def retry_transient(
    what: str,
    action: Callable[[], Awaitable[T]],
    *,
    transient: tuple[type[BaseException], ...] = TRANSIENT_ERRORS,
    on_failure: Callable[[BaseException], None] | None = None,
    on_recovery: Callable[[], None] | None = None,
    **context: Any,
) -> T:
    """Run ``action`` until it succeeds, waiting out ``transient`` errors with jittered backoff.

    Logs ``<what>_failed`` on the first failure and every tenth, ``<what>_recovered`` after.
    """
    attempt = 0
    while True:
        try:
            value = await action()
        except transient as exc:
            if on_failure is not None:
                on_failure(exc)
            delay = jittered_delay(attempt, base_s=0.25, cap_s=5.0)
            if attempt % 10 == 0:
                log.error(
                    f"{what}_failed",
                    error=str(exc)[:300] or type(exc).__name__,
                    attempt=attempt,
                    retry_in_s=round(delay, 2),
                    **context,
                )
            attempt += 1
            await asyncio.sleep(delay)
            continue
        if attempt:
            if on_recovery is not None:
                on_recovery()
            log.warning(f"{what}_recovered", attempts=attempt, **context)
        return value


@contextlib.asynccontextmanager
async def worker_connections(
    settings: Settings, name: str
) -> AsyncIterator[tuple[NATS, JetStreamContext, Engine]]:
    """NATS (streams ensured) and a database engine for one worker process; closed after."""
    engine = make_engine(settings.database_url.get_secret_value())
    nc = await connect_nats(settings, name=name)
    try:
        js = nc.jetstream(timeout=settings.nats_timeout_s)
        await ensure_streams(js, settings)
        yield nc, js, engine
    finally:
        await close_nats(nc)
        engine.dispose()


async def consume(
    js: JetStreamContext,
    nc: NATS,
    *,
    stream: str,
    durable: str,
    dead_letters: DeadLetters,
    stop: asyncio.Event,
    pull: Callable[[JetStreamContext.PullSubscription], Awaitable[Sequence[T]]],
    handle: Callable[[Sequence[T]], Awaitable[None]],
) -> None:
    """Pull and handle batches until ``stop`` is set; exhausted messages are dead-lettered."""
    sub = await js.pull_subscribe_bind(durable, stream=stream)
    advisory = await dead_letters.watch_max_deliveries(nc, stream, durable)
    try:
        while not stop.is_set():
            batch = await pull(sub)
            if batch:
                await handle(batch)
    finally:
        await advisory.unsubscribe()


def nak_delay_s(msg: Msg) -> float:
    """Growing delay before a failed message comes back: 2, 4, 8 ... 60 s."""
    return min(60.0, 2.0**msg.metadata.num_delivered)


class DeadLetters:
    """Sends what a worker cannot handle to REJECTED with its reason; never drops it unseen."""

    def __init__(
        self,
        js: JetStreamContext,
        names: Names,
        *,
        stage: str,
        count: Callable[[str], None] | None = None,
    ) -> None:
        self._js = js
        self._names = names
        self._stage = stage
        self._count = count

    async def send(
        self,
        reason: str,
        detail: str,
        payload: bytes,
        msg_id: str,
        *,
        reading: Reading | None = None,
    ) -> None:
        """Publish a rejection record and wait for JetStream to have it."""
        if self._count is not None:
            self._count(reason)
        log.warning("dead_lettered", reason=reason, detail=detail[:200], stage=self._stage)
        record = Rejection(
            reason=reason,
            detail=detail[:500],
            stage=self._stage,
            received_at=datetime.now(UTC),
            size=len(payload),
            sha256=hashlib.sha256(payload).hexdigest(),
            payload=payload[:REJECTED_PAYLOAD_LIMIT],
            truncated=len(payload) > REJECTED_PAYLOAD_LIMIT,
            reading=reading,
        )
        body = json_encoder.encode(record)
        subject = self._names.rejected_subject(reason)
        await retry_transient(
            "publish_rejection",
            lambda: self._js.publish(subject, body, headers={"Nats-Msg-Id": msg_id}),
            transient=(Exception,),  # a dead letter is never dropped: wait NATS out
        )

    async def watch_max_deliveries(self, nc: NATS, stream: str, consumer: str) -> Subscription:
        """Dead-letter whole every message of ``stream`` that exhausted its deliveries."""

        async def on_advisory(advisory: Msg) -> None:
            try:
                event = json.loads(advisory.data)
                seq = int(event["stream_seq"])
                stored = await self._js.get_msg(stream, seq)
            except Exception as exc:
                log.error("max_deliveries_advisory_unreadable", error=str(exc))
                return
            await self.send(
                "max_deliver_exceeded",
                f"{stream} message {seq} was delivered {event.get('deliveries')} times "
                f"without being handled by {consumer}",
                stored.data or b"",
                f"m-{stream}-{seq}",
            )

        # A queue group: one copy of the worker handles each advisory.
        return await nc.subscribe(
            f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}",
            queue=f"{consumer}-dlq",
            cb=on_advisory,
        )
