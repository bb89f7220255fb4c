"""NATS connections and JetStream streams, shared by every worker."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.client import Server
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from powerflow_common.backoff import jittered_delay
from powerflow_common.logs import get_logger
from powerflow_common.settings import Settings

log = get_logger(__name__)

DAY_S = 24 * 3600.0
NATS_MAX_PAYLOAD = 1024 * 1024


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

    nc = NATS()
    await nc.connect(
        servers=settings.nats_servers,
        name=name,
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
    """The three streams of DESIGN.md, with file storage and their retention."""
    names = settings.names
    common: dict[str, Any] = {
        "retention": RetentionPolicy.LIMITS,
        "storage": StorageType.FILE,
        "discard": DiscardPolicy.OLD,
        "duplicate_window": float(settings.duplicate_window_s),
        "max_msg_size": NATS_MAX_PAYLOAD,
    }
    return [
        StreamConfig(
            name=names.readings_stream,
            subjects=[names.readings_wildcard],
            max_age=settings.readings_max_age_days * DAY_S,
            description="Validated canonical readings, micro-batched by ingest",
            **common,
        ),
        StreamConfig(
            name=names.rejected_stream,
            subjects=[names.rejected_wildcard],
            max_age=settings.rejected_max_age_days * DAY_S,
            description="Dead letters: what could not be stored, with the reason",
            **common,
        ),
        StreamConfig(
            name=names.persisted_stream,
            subjects=[names.persisted_subject],
            max_age=settings.persisted_max_age_days * DAY_S,
            description="One message per committed batch: the (device, hour) buckets touched",
            **common,
        ),
    ]


async def ensure_streams(js: JetStreamContext, settings: Settings) -> None:
    """Create the streams, or update them to the configured limits; idempotent."""
    for config in stream_configs(settings):
        try:
            await js.stream_info(config.name or "")
        except NotFoundError:
            await js.add_stream(config)
            log.info("stream_created", stream=config.name)
        else:
            await js.update_stream(config)


async def delete_streams(js: JetStreamContext, settings: Settings) -> None:
    """Delete this namespace's streams (tests and ``powerflow streams --delete``)."""
    for config in stream_configs(settings):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(config.name or "")


def drop_namespace(settings: Settings) -> None:
    """Delete a namespace's streams from a synchronous caller (benchmarks, tests)."""

    async def drop() -> None:
        nc = await connect_nats(settings, name="powerflow-cleanup")
        await delete_streams(nc.jetstream(), settings)
        await nc.close()

    asyncio.run(drop())
