"""NATS connections and JetStream streams, shared by every worker."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from nats.aio.client import Client as NATS
from nats.aio.client import Server
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    ConsumerConfig,
    DiscardPolicy,
    KeyValueConfig,
    PeerInfo,
    RawStreamMsg,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError

from powerflow_common.backoff import jittered_delay
from powerflow_common.broker_health import bucket_config, delete_bucket
from powerflow_common.errors import ConfigurationError
from powerflow_common.logs import get_logger
from powerflow_common.names import KV_STREAM_PREFIX
from powerflow_common.settings import Settings

log = get_logger(__name__)

T = TypeVar("T")

DAY_S = 24 * 3600.0
NATS_MAX_PAYLOAD = 1024 * 1024
# nats-server's JetStream error codes for a publish refused for want of space.
JS_STORE_FAILED = 10077  # "maximum bytes exceeded" of a discard-new stream, among others
JS_STORAGE_RESOURCES_EXCEEDED = 10047
JS_INSUFFICIENT_RESOURCES = 10023
# "JetStream system temporarily unavailable": no meta leader (an election, no quorum).
JS_CLUSTER_UNAVAILABLE = 10008
# A stream asking for more than one replica of a server that is not in a cluster.
JS_REPLICAS_NOT_SUPPORTED = 10074
# A stream's follower that has not answered its leader for this long is taken as down: Raft
# heartbeats go every second, so a live follower, even a lagging one, is never this silent.
REPLICA_SILENT_S = 10.0
NS_PER_S = 1_000_000_000
# Parked copies carry an id of their old (stream, seq): a re-run of an interrupted migration
# within a day is deduplicated rather than parked twice.
MIGRATION_DUPLICATE_WINDOW_S = 24 * 3600


def _reconnect_with_jitter(
    servers: list[Server], _info: dict[str, Any]
) -> tuple[Server | None, float]:
    server = random.choice(servers)
    return server, jittered_delay(server.reconnects, base_s=0.25, cap_s=5.0)


async def connect_nats(settings: Settings, name: str) -> NATS:
    """Connect to NATS, reconnecting forever with jittered backoff and saying so in the log."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats_error", error=str(exc) or type(exc).__name__)

    async def on_disconnected() -> None:
        if not (nc.is_closed or nc.is_draining):
            log.error("nats_disconnected", servers=settings.nats_servers)

    async def on_reconnected() -> None:
        log.warning("nats_reconnected")

    if not settings.nats_servers:
        # nats.py would quietly try nats://localhost:4222, someone else's server.
        raise ConfigurationError(
            "no NATS: set POWERFLOW_NATS_URL or start `powerflow up` with this data folder"
        )
    nc = NATS()
    # Per-service NATS users (deploy/nats/nats.conf): the password from its secret file.
    password = settings.nats_password
    await nc.connect(
        servers=settings.nats_servers,
        name=name,
        user=settings.nats_user,
        password=None if password is None else password.get_secret_value(),
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
        max_reconnect_attempts=-1,
        connect_timeout=max(1, round(settings.nats_timeout_s)),
        reconnect_to_server_handler=_reconnect_with_jitter,
        allow_reconnect=True,
    )
    return nc


async def close_nats(nc: NATS, timeout_s: int = 5) -> None:
    """Flush what is buffered (acks, publishes) and close, without hanging on a lost server."""
    with contextlib.suppress(Exception):
        await nc.flush(timeout=timeout_s)
    await nc.close()


def stream_configs(settings: Settings) -> list[StreamConfig]:
    """The streams (docs/architecture.md, "Names") and ROLLUPS (alerts): storage, retention, limits.

    READINGS and PERSISTED are work queues: JetStream frees what their one consumer acked
    (and keeps what was published before any consumer exists), so the byte limit bounds the
    backlog; discard-new makes a full stream refuse a publish, which holds ingest (or the
    writer) instead of dropping stored data. REJECTED is a record for people: discard-old,
    so a flood of bad messages evicts the oldest records (ingest counts and logs them).
    Each has ``stream_replicas`` copies (on a cluster; a single server takes only 1).
    """
    names = settings.names
    common: dict[str, Any] = {
        "storage": StorageType.FILE,
        "num_replicas": settings.stream_replicas,
        "duplicate_window": float(settings.duplicate_window_s),
        "max_msg_size": NATS_MAX_PAYLOAD,
    }
    work_queue: dict[str, Any] = {
        **common,
        "retention": RetentionPolicy.WORK_QUEUE,
        "discard": DiscardPolicy.NEW,
    }
    return [
        StreamConfig(
            name=names.readings_stream,
            subjects=[names.readings_wildcard],
            max_age=settings.readings_max_age_days * DAY_S,
            max_bytes=settings.readings_max_bytes,
            description="Validated canonical readings, micro-batched by ingest",
            **work_queue,
        ),
        StreamConfig(
            name=names.rejected_stream,
            subjects=[names.rejected_wildcard],
            max_age=settings.rejected_max_age_days * DAY_S,
            max_bytes=settings.rejected_max_bytes,
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.OLD,
            description="Dead letters: what could not be stored, with the reason",
            **common,
        ),
        StreamConfig(
            name=names.persisted_stream,
            subjects=[names.persisted_subject],
            max_age=settings.persisted_max_age_days * DAY_S,
            max_bytes=settings.persisted_max_bytes,
            description="One message per committed batch: the (device, hour) buckets touched",
            **work_queue,
        ),
        # Alerts: a record, not a work queue, so an aggregator is never held up
        # when no alerts worker runs; what no one read in time is discarded oldest first.
        StreamConfig(
            name=names.rollups_stream,
            subjects=[names.rollups_subject],
            max_age=settings.rollups_max_age_days * DAY_S,
            max_bytes=settings.rollups_max_bytes,
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.OLD,
            description="One message per aggregator batch: the (device, hour) buckets rolled up",
            **common,
        ),
    ]


def is_stream_full(exc: BaseException) -> bool:
    """True when JetStream refused a publish for want of space (not for being away).

    nats-server answers a discard-new stream at its ``max_bytes`` with 503, err_code 10077
    "maximum bytes exceeded" (measured on 2.9.10); a server or account out of storage with
    10047 "insufficient storage resources" or 10023 "insufficient resources".
    """
    if not isinstance(exc, APIError):
        return False
    if exc.err_code in (JS_STORAGE_RESOURCES_EXCEEDED, JS_INSUFFICIENT_RESOURCES):
        return True
    return exc.err_code == JS_STORE_FAILED and "exceeded" in (exc.description or "")


def retention_name(retention: RetentionPolicy | str | None) -> str:
    """How the server spells a retention policy ("limits", "workqueue", "interest").

    nats-py hands back a stream's retention as the server's plain string, not the enum.
    """
    return RetentionPolicy(retention or RetentionPolicy.LIMITS).value


def needs_migration(existing: StreamConfig, wanted: StreamConfig) -> bool:
    """The server cannot change a stream's retention in place: it must be copied over."""
    return retention_name(existing.retention) != retention_name(wanted.retention)


def bucket_configs(settings: Settings) -> list[KeyValueConfig]:
    """The key-value buckets of this namespace, with ``stream_replicas`` copies each."""
    return [bucket_config(settings.names, replicas=settings.stream_replicas)]


async def _create_replicated(
    what: str, replicas: int, create: Callable[[], Awaitable[Any]]
) -> None:
    """``create()`` a stream or key-value bucket of ``replicas`` copies.

    One rule for both: a server that answers but will not place the copies is a configuration
    error (nothing runs on fewer copies than asked for); no answer is raised as it is, for
    :func:`until_answered` to wait out.
    """
    try:
        await create()
    except APIError as exc:
        if replicas > 1 and not is_unanswered(exc):
            raise replicas_refused(replicas, what, exc) from exc
        raise


def replicas_refused(wanted: int, what: str, exc: APIError) -> ConfigurationError:
    """What to do when the server will not place ``wanted`` copies of a new stream or bucket."""
    if exc.err_code == JS_REPLICAS_NOT_SUPPORTED:
        why = "the NATS server is a single server, not a JetStream cluster"
    else:
        why = f"the cluster refused ({exc.description or exc})"
    return ConfigurationError(
        f"cannot create {what} with POWERFLOW_STREAM_REPLICAS={wanted}: {why}. Set"
        " POWERFLOW_STREAM_REPLICAS=1 for a single server, or start at least"
        f' {wanted} JetStream nodes (docs/operations.md "NATS cluster")'
    )


async def ensure_streams(js: JetStreamContext, settings: Settings) -> None:
    """Create the streams and buckets, or update them to the configured limits; idempotent.

    A stream whose retention differs (a LIMITS stream of an older powerflow) is left exactly
    as it is, said loudly: limits it cannot free would fill up and stop ingest for good.
    ``powerflow streams`` migrates it (:func:`migrate_streams`); ``/readyz`` says degraded.
    A stream or bucket with another number of replicas is moved to ``stream_replicas``
    (a cluster copies it in place); if the server refuses, that is said loudly and stays on
    ``/readyz`` until fixed. A new stream the server cannot replicate is a configuration
    error (:func:`replicas_refused`): nothing runs on fewer copies than asked for.
    """
    for config in stream_configs(settings):
        await until_answered(
            "ensure_stream",
            functools.partial(_ensure_stream, js, settings, config),
            stream=config.name,
        )
    for bucket in bucket_configs(settings):
        await until_answered(
            "ensure_bucket", functools.partial(_ensure_bucket, js, bucket), bucket=bucket.bucket
        )


async def _ensure_stream(js: JetStreamContext, settings: Settings, config: StreamConfig) -> None:
    name = config.name or ""
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        await _create_replicated(
            name, settings.stream_replicas, functools.partial(js.add_stream, config)
        )
        log.info(
            "stream_created",
            stream=name,
            retention=retention_name(config.retention),
            replicas=config.num_replicas,
        )
        return
    if needs_migration(info.config, config):
        log.error(
            "stream_needs_migration",
            stream=name,
            retention=retention_name(info.config.retention),
            wanted=retention_name(config.retention),
            fix="run `powerflow streams` to migrate it (no message is lost)",
        )
        return
    await _update_stream(js, config, info.config.num_replicas or 1)


def is_unanswered(exc: BaseException) -> bool:
    """JetStream did not answer for now: no leader yet (an election, no quorum), or away."""
    if isinstance(exc, NatsTimeoutError | NoRespondersError | asyncio.TimeoutError):
        return True
    return isinstance(exc, ServiceUnavailableError) and exc.err_code == JS_CLUSTER_UNAVAILABLE


async def until_answered(what: str, call: Callable[[], Awaitable[T]], **context: Any) -> T:
    """``call()`` until JetStream answers it, waiting out elections and lost quorums.

    Said loudly (``jetstream_unanswered``, then every tenth attempt); any other error is
    raised. Each JetStream step here is idempotent, so repeating one is harmless.
    """
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as exc:
            if not is_unanswered(exc):
                raise
            delay = jittered_delay(attempt, base_s=0.25, cap_s=5.0)
            if attempt % 10 == 0:
                log.error(
                    "jetstream_unanswered",
                    step=what,
                    error=str(exc) or type(exc).__name__,
                    attempt=attempt,
                    retry_in_s=round(delay, 2),
                    consequence="waiting: a JetStream leader election, a cluster without"
                    " quorum, or the server away",
                    **context,
                )
            attempt += 1
            await asyncio.sleep(delay)


async def _update_stream(js: JetStreamContext, config: StreamConfig, replicas: int) -> None:
    """Apply ``config`` to an existing stream whose copies are ``replicas`` now.

    A change of replicas the server refuses (a single server asked for 3, a cluster with too
    few nodes up) is logged with what to do, and the rest of ``config`` applied without it.
    """
    wanted = config.num_replicas or 1
    if replicas != wanted:
        try:
            await js.update_stream(config)
        except APIError as exc:
            if is_unanswered(exc):
                raise  # no meta leader now: until_answered tries the whole step again
            log.error(
                "stream_replicas_not_changed",
                stream=config.name,
                replicas=replicas,
                wanted=wanted,
                error=exc.description or str(exc),
                fix="start enough JetStream cluster nodes and restart this process, or set"
                f" POWERFLOW_STREAM_REPLICAS={replicas}",
            )
            config = dataclasses.replace(config, num_replicas=replicas)
        else:
            log.warning(
                "stream_replicas_changed", stream=config.name, replicas=wanted, was=replicas
            )
            return
    await js.update_stream(config)


async def _ensure_bucket(js: JetStreamContext, config: KeyValueConfig) -> None:
    """Create a key-value bucket, or move an existing one to ``config.replicas`` copies."""
    stream = f"{KV_STREAM_PREFIX}{config.bucket}"
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        await _create_replicated(
            f"the key-value bucket {config.bucket}",
            config.replicas,
            functools.partial(js.create_key_value, config),
        )
        log.info("bucket_created", bucket=config.bucket, replicas=config.replicas)
        return
    replicas = info.config.num_replicas or 1
    if replicas != config.replicas:
        # Only the copies change: the bucket's other settings are the client library's.
        await _update_stream(
            js, dataclasses.replace(info.config, num_replicas=config.replicas), replicas
        )


@dataclass(frozen=True, slots=True)
class StreamUsage:
    """What a stream holds against its limits, as the server reports it."""

    name: str
    retention_ok: bool
    messages: int
    bytes: int
    max_bytes: int  # <= 0: no byte limit
    first_seq: int
    last_seq: int
    replicas: int = 1  # copies the stream has
    replicas_wanted: int = 1  # stream_replicas
    replicas_offline: int = 0  # copies the stream's leader does not hear from

    @property
    def ratio(self) -> float:
        """Share of the byte limit in use (0 without a limit)."""
        return self.bytes / self.max_bytes if self.max_bytes > 0 else 0.0

    @property
    def removed(self) -> int:
        """Messages removed from the head since the stream was created (acked or evicted)."""
        return self.first_seq - 1 if self.messages else self.last_seq


async def stream_usage(js: JetStreamContext, settings: Settings) -> list[StreamUsage]:
    """The usage of each of this namespace's streams (a missing stream raises NotFoundError)."""
    usages = []
    for config in stream_configs(settings):
        info = await js.stream_info(config.name or "")
        usages.append(
            StreamUsage(
                name=config.name or "",
                retention_ok=not needs_migration(info.config, config),
                messages=info.state.messages,
                bytes=info.state.bytes,
                max_bytes=info.config.max_bytes or 0,
                first_seq=info.state.first_seq,
                last_seq=info.state.last_seq,
                replicas=info.config.num_replicas or 1,
                replicas_wanted=config.num_replicas or 1,
                replicas_offline=offline_replicas(info),
            )
        )
    return usages


def offline_replicas(info: StreamInfo) -> int:
    """Followers the stream's leader has not heard from lately (none on a single server).

    nats-server marks a peer ``offline`` only after a clean shutdown or minutes without its
    heartbeats; a killed node shows first as not current and silent, which counts here too.
    """
    peers = info.cluster.replicas if info.cluster is not None else None
    return sum(1 for peer in peers or [] if peer_unreachable(peer))


def peer_unreachable(peer: PeerInfo) -> bool:
    """Offline, or behind and silent longer than a follower under load ever is, or behind and
    never heard from by this leader.

    A leader elected after its predecessor was killed reports that predecessor as not current
    with ``active`` 0 (it has never heard from it) for as long as the node stays down; a live
    follower answers the new leader's first heartbeat within a second, so it shows so only in
    the moment after an election.
    """
    if peer.offline:
        return True
    if peer.current:
        return False
    silent_ns = peer.active or 0  # 0: never heard from
    return silent_ns == 0 or silent_ns / NS_PER_S > REPLICA_SILENT_S


def quorum(replicas: int) -> int:
    """Copies that must be up for a stream to store anything: a majority (Raft)."""
    return replicas // 2 + 1


def replica_problems(usage: StreamUsage) -> list[str]:
    """What an operator must hear about a stream's copies."""
    problems = []
    if usage.replicas != usage.replicas_wanted:
        problems.append(
            f"{usage.name} has {usage.replicas} replica(s), POWERFLOW_STREAM_REPLICAS="
            f"{usage.replicas_wanted}: the server refused the change (see the log"
            " stream_replicas_not_changed)"
        )
    if usage.replicas_offline:
        up = usage.replicas - usage.replicas_offline
        effect = (
            "no quorum: publishes are held until a node returns"
            if up < quorum(usage.replicas)
            else f"{up - quorum(usage.replicas)} more node(s) down stops publishes"
        )
        problems.append(
            f"{usage.name}: {usage.replicas_offline} of {usage.replicas} replicas offline; {effect}"
        )
    return problems


def usage_problems(
    usages: list[StreamUsage], alert_ratio: float, discard_old: frozenset[str]
) -> list[str]:
    """What an operator must hear about: a stream to migrate, a backlog near its limit.

    Streams in ``discard_old`` (REJECTED) are left out of the usage alert: being full is their
    normal state once old records start to go, which is counted separately.
    """
    problems = []
    for usage in usages:
        problems += replica_problems(usage)
        if not usage.retention_ok:
            problems.append(
                f"{usage.name} keeps what its consumer acked (old retention):"
                " run `powerflow streams` to migrate it"
            )
        if usage.name not in discard_old and usage.ratio >= alert_ratio:
            problems.append(
                f"{usage.name} at {usage.ratio:.0%} of its {usage.max_bytes} byte limit:"
                " its consumer is behind or stopped; at 100% publishes are held"
            )
    return problems


async def stream_problems(js: JetStreamContext, settings: Settings) -> list[str]:
    """Problems of this namespace's streams, for ``/readyz`` and ingest's periodic check."""
    try:
        usages = await stream_usage(js, settings)
    except NotFoundError:
        return ["a JetStream stream is missing: run `powerflow streams`"]
    return usage_problems(
        usages,
        settings.stream_usage_alert_ratio,
        frozenset({settings.names.rejected_stream}),
    )


def migration_stream_name(name: str) -> str:
    """Where a stream's unconsumed messages wait while it is recreated."""
    return f"{name}_MIGRATING"


def migration_subject(name: str, subject: str) -> str:
    """The subject a parked message of ``name`` waits on (its own subject, prefixed)."""
    return f"_powerflow_migrating.{name}.{subject}"


def _original_subject(name: str, subject: str) -> str:
    return subject.removeprefix(f"_powerflow_migrating.{name}.")


async def migrate_streams(js: JetStreamContext, settings: Settings) -> list[str]:
    """Recreate every stream whose retention changed, keeping every unconsumed message.

    Steps, each safe to repeat if the process dies (run it again to finish):
    1. seal the old stream: publishes are refused from now on, and ingest holds them
       (MQTT unacked), retrying; 2. copy every message its consumers have not acked (all of
    them without a consumer) into ``<NAME>_MIGRATING``; 3. delete the old stream and create
    the new one with the same consumers; 4. copy the messages back (ids from their old
    sequence, so a repeated step dedupes); 5. delete ``<NAME>_MIGRATING``. A message acked
    during the copy may be delivered again: the writer and aggregator are idempotent.
    Returns what was done.
    """
    done = []
    for config in stream_configs(settings):
        name = config.name or ""
        temp = migration_stream_name(name)
        existing: StreamInfo | None
        try:
            existing = await js.stream_info(name)
        except NotFoundError:
            existing = None
        has_temp = await _exists(js, temp)
        if existing is not None and not needs_migration(existing.config, config):
            if has_temp:  # died while copying back: finish it
                copied = await _copy_back(js, name, temp)
                done.append(f"{name}: finished an interrupted migration ({copied} copied back)")
            continue
        if existing is None and not has_temp:
            continue  # ensure_streams creates it
        consumers: list[ConsumerConfig] = []
        if existing is not None:
            consumers, kept = await _park(js, existing, temp, settings.stream_replicas)
            await js.delete_stream(name)
            log.warning("stream_migration_old_deleted", stream=name, parked=kept)
        else:
            log.warning(
                "stream_migration_resumed_without_consumers",
                stream=name,
                consequence="workers recreate their consumers when they start",
            )
        await js.add_stream(config)
        for consumer in consumers:
            # Consumers made by older versions stop redelivering at the server's max_deliver; on
            # a work queue such a message would stay forever, neither stored nor dead-
            # lettered. Our workers count deliveries themselves (consumers.DeadLetters).
            consumer.max_deliver = -1
            try:
                await js.add_consumer(name, consumer)
            except APIError as exc:
                log.error(
                    "stream_migration_consumer_not_recreated",
                    stream=name,
                    consumer=consumer.durable_name,
                    error=str(exc),
                )
        copied = await _copy_back(js, name, temp)
        retention = retention_name(config.retention)
        done.append(f"{name}: migrated to {retention}, {copied} unconsumed messages kept")
        log.warning("stream_migrated", stream=name, retention=retention, kept=copied)
    return done


async def _exists(js: JetStreamContext, name: str) -> bool:
    try:
        await js.stream_info(name)
    except NotFoundError:
        return False
    return True


async def _park(
    js: JetStreamContext, existing: StreamInfo, temp: str, replicas: int
) -> tuple[list[ConsumerConfig], int]:
    """Seal the old stream and copy what no consumer has acked into ``temp``."""
    name = existing.config.name or ""
    if not existing.config.sealed:
        sealed = existing.config
        sealed.sealed = True
        await js.update_stream(sealed)
        log.warning("stream_sealed_for_migration", stream=name)
    info = await js.stream_info(name)  # sealed: last_seq is final
    consumers = await js.consumers_info(name)
    first = info.state.first_seq
    if consumers:
        # Everything above the lowest ack floor: more than needed is harmless (idempotent).
        floors = [c.ack_floor.stream_seq or 0 if c.ack_floor else 0 for c in consumers]
        first = max(first, min(floors) + 1)
    if not await _exists(js, temp):
        await js.add_stream(
            StreamConfig(
                name=temp,
                subjects=[migration_subject(name, ">")],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                duplicate_window=float(MIGRATION_DUPLICATE_WINDOW_S),
                num_replicas=replicas,  # as safe as the stream they come from
                description=f"Unconsumed messages of {name} while it is recreated",
            )
        )
    kept = 0
    for seq in range(first, info.state.last_seq + 1):
        try:
            msg = await js.get_msg(name, seq)
        except NotFoundError:
            continue  # deleted or expired: nothing to keep
        await js.publish(
            migration_subject(name, msg.subject or ""),
            msg.data or b"",
            headers=_copy_headers(msg, name, seq),
        )
        kept += 1
    return [c.config for c in consumers], kept


async def _copy_back(js: JetStreamContext, name: str, temp: str) -> int:
    """Publish every parked message to its own subject, waiting while the stream is full."""
    info = await js.stream_info(temp)
    copied = 0
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        if not info.state.messages:
            break
        try:
            msg = await js.get_msg(temp, seq)
        except NotFoundError:
            continue
        attempt = 0
        while True:
            try:
                await js.publish(
                    _original_subject(name, msg.subject or ""),
                    msg.data or b"",
                    headers=dict(msg.headers or {}),
                )
                break
            except APIError as exc:
                if not is_stream_full(exc):
                    raise
                log.error("stream_migration_waiting_for_space", stream=name, attempt=attempt)
                await asyncio.sleep(jittered_delay(attempt, base_s=0.5, cap_s=5.0))
                attempt += 1
        copied += 1
    await js.delete_stream(temp)
    return copied


def _copy_headers(msg: RawStreamMsg, name: str, seq: int) -> dict[str, str]:
    """The message's headers with an id of its old (stream, seq).

    Not its own id: ids of an older powerflow came from keys only, and two different messages
    could share one; (stream, seq) is unique, so a re-run of an interrupted step dedupes and
    nothing different is ever dropped.
    """
    headers = dict(msg.headers or {})
    headers["Nats-Msg-Id"] = f"migrated-{name}-{seq}"
    return headers


async def delete_streams(js: JetStreamContext, settings: Settings) -> None:
    """Delete this namespace's streams and ingest's broker-health bucket (tests, benchmarks
    and ``powerflow streams --delete``), so nothing of a namespace is left behind."""
    for config in stream_configs(settings):
        for name in (config.name or "", migration_stream_name(config.name or "")):
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(name)
    await delete_bucket(js, settings.names)
    with contextlib.suppress(NotFoundError):  # ingest's slot leases
        await js.delete_key_value(settings.names.ingest_leases_bucket)


def drop_namespace(settings: Settings) -> None:
    """Delete a namespace's streams from a synchronous caller (benchmarks, tests)."""

    async def drop() -> None:
        nc = await connect_nats(settings, name="powerflow-cleanup")
        await delete_streams(nc.jetstream(), settings)
        await nc.close()

    asyncio.run(drop())
