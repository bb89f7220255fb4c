"""``powerflow aggregator``: connect, make sure the stream and consumer exist, run until stopped."""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import start_http_server
from sqlalchemy import Engine

from powerflow_aggregator.consumer import Aggregator, ensure_aggregator_consumer
from powerflow_aggregator.retention_job import run_retention
from powerflow_aggregator.rollup import RollupConfig
from powerflow_common.consumers import stop_on_signals, worker_connections
from powerflow_common.logs import get_logger
from powerflow_common.settings import Settings

log = get_logger(__name__)


async def retention_loop(engine: Engine, settings: Settings, stop: asyncio.Event) -> None:
    """Run the retention job now and every ``retention_interval_s`` until ``stop`` is set.

    A failed run is logged and counted (``powerflow_retention_runs_total{outcome="failed"}``)
    and tried again at the next interval; it never stops the aggregator.
    """
    interval_s = settings.retention_interval_s
    if interval_s <= 0:
        log.info("retention_job_off", reason="POWERFLOW_RETENTION_INTERVAL_S is 0")
        return
    while not stop.is_set():
        try:
            await asyncio.to_thread(run_retention, engine, settings)
        except Exception as exc:
            log.exception("retention_failed", error=f"{type(exc).__name__}: {exc}"[:500])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)


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
            raw_retention_days=settings.raw_retention_days,
            retention_interval_s=settings.retention_interval_s,
        )
        retention = asyncio.create_task(retention_loop(engine, settings, stop))
        try:
            await Aggregator(nc=nc, js=js, engine=engine, settings=settings, config=config).run(
                stop
            )
        finally:
            stop.set()
            await retention
    log.info("aggregator_stopped")


def main(settings: Settings) -> None:
    """Entry point of ``powerflow aggregator``."""
    if settings.aggregator_metrics_port:
        start_http_server(settings.aggregator_metrics_port, addr=settings.metrics_host)
    asyncio.run(run_aggregator(settings))
