"""``powerflow writer``: connect, make sure the stream and consumer exist, run until stopped."""

from __future__ import annotations

import asyncio

from prometheus_client import start_http_server

from powerflow_common.consumers import stop_on_signals, worker_connections
from powerflow_common.logs import get_logger
from powerflow_common.settings import Settings
from powerflow_writer.consumer import Writer, ensure_writer_consumer

log = get_logger(__name__)


async def run_writer(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run one writer copy until ``stop`` is set (or SIGINT/SIGTERM)."""
    stop = stop or stop_on_signals()
    async with worker_connections(settings, "powerflow-writer") as (nc, js, engine):
        await ensure_writer_consumer(js, settings)
        log.info(
            "writer_starting",
            stream=settings.names.readings_stream,
            consumer=settings.names.writer_consumer,
            batch_max_readings=settings.writer_batch_max_readings,
        )
        await Writer(nc=nc, js=js, engine=engine, settings=settings).run(stop)
    log.info("writer_stopped")


def main(settings: Settings) -> None:
    """Entry point of ``powerflow writer``."""
    if settings.writer_metrics_port:
        start_http_server(settings.writer_metrics_port, addr=settings.metrics_host)
    asyncio.run(run_writer(settings))
