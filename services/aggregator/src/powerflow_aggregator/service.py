"""``powerflow aggregator``: connect, make sure the stream and consumer exist, run until stopped."""

from __future__ import annotations

import asyncio

from prometheus_client import start_http_server

from powerflow_aggregator.consumer import Aggregator, ensure_aggregator_consumer
from powerflow_aggregator.rollup import RollupConfig
from powerflow_common.consumers import stop_on_signals, worker_connections
from powerflow_common.logs import get_logger
from powerflow_common.settings import Settings

log = get_logger(__name__)


async def run_aggregator(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run one aggregator copy until ``stop`` is set (or SIGINT/SIGTERM)."""
    stop = stop or stop_on_signals()
    config = RollupConfig.from_settings(settings)
    async with worker_connections(settings, "powerflow-aggregator") as (nc, js, engine):
        await ensure_aggregator_consumer(js, settings)
        log.info(
            "aggregator_starting",
            stream=settings.names.persisted_stream,
            consumer=settings.names.aggregator_consumer,
            factor_set=config.factor_set,
            default_region=config.default_region,
        )
        await Aggregator(nc=nc, js=js, engine=engine, settings=settings, config=config).run(stop)
    log.info("aggregator_stopped")


def main(settings: Settings) -> None:
    """Entry point of ``powerflow aggregator``."""
    if settings.aggregator_metrics_port:
        start_http_server(settings.aggregator_metrics_port, addr=settings.metrics_host)
    asyncio.run(run_aggregator(settings))
