"""``powerflow aggregator``: connect, make sure the stream and consumer exist, run until stopped."""

from __future__ import annotations

import asyncio

from prometheus_client import start_http_server

from powerflow_aggregator.consumer import Aggregator, ensure_aggregator_consumer
from powerflow_aggregator.rollup import RollupConfig
from powerflow_common.consumers import stop_on_signals
from powerflow_common.db.engine import make_engine
from powerflow_common.jetstream import close_nats, connect_nats, ensure_streams
from powerflow_common.logs import get_logger
from powerflow_common.settings import Settings

log = get_logger(__name__)


async def run_aggregator(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run one aggregator copy until ``stop`` is set (or SIGINT/SIGTERM)."""
    stop = stop or stop_on_signals()
    engine = make_engine(settings.database_url.get_secret_value())
    nc = await connect_nats(settings, name="powerflow-aggregator")
    js = nc.jetstream(timeout=settings.nats_timeout_s)
    await ensure_streams(js, settings)
    await ensure_aggregator_consumer(js, settings)
    config = RollupConfig.from_settings(settings)
    log.info(
        "aggregator_starting",
        stream=settings.names.persisted_stream,
        consumer=settings.names.aggregator_consumer,
        factor_set=config.factor_set,
        default_region=config.default_region,
    )
    try:
        await Aggregator(nc=nc, js=js, engine=engine, settings=settings, config=config).run(stop)
    finally:
        await close_nats(nc)
        engine.dispose()
        log.info("aggregator_stopped")


def main(settings: Settings) -> None:
    """Entry point of ``powerflow aggregator``."""
    if settings.aggregator_metrics_port:
        start_http_server(settings.aggregator_metrics_port, addr=settings.metrics_host)
    asyncio.run(run_aggregator(settings))
