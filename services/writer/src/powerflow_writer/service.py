"""``powerflow writer``: connect, make sure the stream and consumer exist, run until stopped."""

from __future__ import annotations

import asyncio

from prometheus_client import start_http_server

from powerflow_common.consumers import stop_on_signals
from powerflow_common.db.engine import make_engine
from powerflow_common.jetstream import close_nats, connect_nats, ensure_streams
from powerflow_common.logs import get_logger
from powerflow_common.settings import Settings
from powerflow_writer.consumer import Writer, ensure_writer_consumer

log = get_logger(__name__)


async def run_writer(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run one writer copy until ``stop`` is set (or SIGINT/SIGTERM)."""
    stop = stop or stop_on_signals()
    engine = make_engine(settings.database_url.get_secret_value())
    nc = await connect_nats(settings, name="powerflow-writer")
    js = nc.jetstream(timeout=settings.nats_timeout_s)
    await ensure_streams(js, settings)
    await ensure_writer_consumer(js, settings)
    log.info(
        "writer_starting",
        stream=settings.names.readings_stream,
        consumer=settings.names.writer_consumer,
        batch_max_readings=settings.writer_batch_max_readings,
    )
    try:
        await Writer(nc=nc, js=js, engine=engine, settings=settings).run(stop)
    finally:
        await close_nats(nc)
        engine.dispose()
        log.info("writer_stopped")


def main(settings: Settings) -> None:
    """Entry point of ``powerflow writer``."""
    if settings.writer_metrics_port:
        start_http_server(settings.writer_metrics_port, addr=settings.metrics_host)
    asyncio.run(run_writer(settings))
