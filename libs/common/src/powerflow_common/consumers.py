"""The edge every JetStream worker shares: durable consumers, outages waited out, dead letters.

Workers (writer, aggregator) keep only their handler and their order of steps; how to pull,
how to keep a batch while the database is away, and how to dead-letter is said once, here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
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
from powerflow_common.msgids import content_id
from powerflow_common.names import Names
from powerflow_common.settings import Settings
from powerflow_common.wire import REJECTED_PAYLOAD_LIMIT, Reading, Rejection, json_encoder

log = get_logger(__name__)

T = TypeVar("T")

UNLIMITED_DELIVERIES = -1
MAX_DELIVER_EXCEEDED = "max_deliver_exceeded"

# Outages worth waiting out with the batch in hand; anything else is the batch's own fault.
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError)
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    *TRANSIENT_DB_ERRORS,
    NatsError,
    OSError,
    TimeoutError,
)


async def settle(what: str, msg: Msg, action: Callable[[], Awaitable[None]]) -> None:
    """Ack, nak or term ``msg``; when NATS is away that only means a redelivery: said, not raised.

    A failed ack must not be taken for a failure of the message (which would split its batch
    and count against its deliveries).
    """
    try:
        await action()
    except Exception as exc:
        log.warning(
            "settle_failed",
            action=what,
            sequence=msg.metadata.sequence.stream,
            error=str(exc)[:200] or type(exc).__name__,
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
) -> None:
    """Create or update a durable pull consumer shared by every copy of a worker.

    The server redelivers without limit: the worker counts deliveries and dead-letters
    (:class:`DeadLetters`), so nothing expires unseen when no worker is listening.
    """
    config = ConsumerConfig(
        durable_name=durable,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait_s,
        max_deliver=UNLIMITED_DELIVERIES,
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
                if msg._ackd:  # settled: a beat now would override a nak's delay
                    continue
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
    *,
    stream: str,
    durable: str,
    dead_letters: DeadLetters,
    stop: asyncio.Event,
    pull: Callable[[JetStreamContext.PullSubscription], Awaitable[Sequence[T]]],
    handle: Callable[[Sequence[T]], Awaitable[None]],
) -> None:
    """Pull and handle batches until ``stop`` is set.

    Exhausted messages are dead-lettered by the worker itself from their delivery count
    (:meth:`DeadLetters.screen` in ``pull``, :meth:`DeadLetters.retry_or_give_up` on
    failure), never from the max-deliveries advisory: an advisory is not persisted, so with
    no worker subscribed at that moment a message would be neither stored nor dead-lettered.
    """
    sub = await js.pull_subscribe_bind(durable, stream=stream)
    log.info("consuming", stream=stream, consumer=durable, max_deliver=dead_letters.max_deliver)
    while not stop.is_set():
        batch = await pull(sub)
        if batch:
            await handle(batch)


def nak_delay_s(msg: Msg) -> float:
    """Growing delay before a failed message comes back: 2, 4, 8 ... 60 s."""
    return min(60.0, 2.0**msg.metadata.num_delivered)


def redelivery_order(items: Sequence[T], position: Callable[[T], tuple[int, int]]) -> list[T]:
    """Redelivered items, each handled alone, in an order that lets a killer's neighbours by.

    ``position`` gives (stream sequence, delivery count). If one message kills the process,
    the ones handled after it come back with it: sorted by sequence, reversed when the
    highest delivery count is odd, they come before it on the next delivery. So a neighbour
    of a message that kills the process is stored by its third delivery, far from the limit.
    """
    if not items:
        return []
    ordered = sorted(items, key=lambda item: position(item)[0])
    if max(position(item)[1] for item in items) % 2:
        ordered.reverse()
    return ordered


def dead_letter_id(kind: str, msg: Msg) -> str:
    """The id of a dead letter of a whole message: (stream, sequence), so it is stored once.

    The content is in it too: sequences start again when a stream is recreated, and another
    message at the same sequence must not be taken for a duplicate and lost.
    """
    return content_id(
        f"{kind}-{msg.metadata.stream}-{msg.metadata.sequence.stream}",
        msg.subject.encode(),
        msg.data,
    )


# Fault injection for the tests only (not a setting: nothing in production sets it). The
# worker logs ``test_hang`` and hangs at that point, so a test can kill -9 it exactly there:
#   last_delivery      a message at its last delivery, before it is handled
#   after_dead_letter  after REJECTED acknowledged the dead letter, before ``term``
TEST_HANG_ENV = "POWERFLOW_TEST_HANG_AT"


async def _test_hang(point: str, msg: Msg) -> None:
    if os.environ.get(TEST_HANG_ENV) == point:
        log.warning("test_hang", point=point, sequence=msg.metadata.sequence.stream)
        await asyncio.Event().wait()


class DeadLetters:
    """Sends what a worker cannot handle to REJECTED with its reason; never drops it unseen.

    ``max_deliver`` is the worker's own limit; the durable consumer itself redelivers without
    limit (``max_deliver=-1``), so a message is never dropped by the server unseen.
    """

    def __init__(
        self,
        js: JetStreamContext,
        names: Names,
        *,
        stage: str,
        max_deliver: int,
        payload_limit: int = REJECTED_PAYLOAD_LIMIT,
        count: Callable[[str], None] | None = None,
    ) -> None:
        self._js = js
        self._payload_limit = payload_limit
        self._names = names
        self._stage = stage
        self.max_deliver = max_deliver
        self._count = count

    async def send(
        self,
        reason: str,
        detail: str,
        payload: bytes,
        msg_id: str,
        *,
        reading: Reading | None = None,
        topic: str = "",
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
            topic=topic,
            size=len(payload),
            sha256=hashlib.sha256(payload).hexdigest(),
            payload=payload[: self._payload_limit],
            truncated=len(payload) > self._payload_limit,
            reading=reading,
        )
        body = json_encoder.encode(record)
        subject = self._names.rejected_subject(reason)
        await retry_transient(
            "publish_rejection",
            lambda: self._js.publish(subject, body, headers={"Nats-Msg-Id": msg_id}),
            transient=(Exception,),  # a dead letter is never dropped: wait NATS out
        )

    async def give_up(self, msg: Msg, detail: str) -> None:
        """Dead-letter ``msg`` whole as exhausted, await REJECTED's ack, then terminate it.

        A crash between the two redelivers it past the limit; :meth:`screen` then sends the
        same dead letter again, with the same id, which JetStream drops as a duplicate.
        """
        await self.send(
            MAX_DELIVER_EXCEEDED,
            f"{msg.metadata.stream} message {msg.metadata.sequence.stream}, delivered "
            f"{msg.metadata.num_delivered} times (limit {self.max_deliver}): {detail}",
            msg.data,
            dead_letter_id("m", msg),
        )
        await _test_hang("after_dead_letter", msg)
        await settle("term", msg, msg.term)

    async def retry_or_give_up(self, msg: Msg, detail: str) -> None:
        """A message that failed: back later with a growing delay, or dead at its limit."""
        if msg.metadata.num_delivered >= self.max_deliver:
            await self.give_up(msg, detail)
        else:
            await settle("nak", msg, lambda: msg.nak(delay=nak_delay_s(msg)))

    async def screen(self, messages: Sequence[Msg]) -> list[Msg]:
        """The messages still worth handling.

        One delivered past the limit (its worker died between dead letter and ``term``, or
        while handling its last delivery) is dead-lettered without being handled again.
        """
        keep = []
        for msg in messages:
            delivered = msg.metadata.num_delivered
            if delivered > self.max_deliver:
                await self.give_up(msg, "its last delivery was not seen through")
                continue
            if delivered == self.max_deliver:
                await _test_hang("last_delivery", msg)
            keep.append(msg)
        return keep
