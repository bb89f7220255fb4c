"""``powerflow alerts``: connect, make sure the streams and consumer exist, run until stopped."""

from __future__ import annotations

import asyncio

from prometheus_client import start_http_server

from powerflow_alerts.delivery import check_channels
from powerflow_alerts.worker import AlertsWorker, ensure_alerts_consumer
from powerflow_common.consumers import stop_on_signals, worker_connections
from powerflow_common.logs import get_logger
from powerflow_common.settings import Settings

log = get_logger(__name__)


async def run_alerts(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run one alerts copy until ``stop`` is set (or SIGINT/SIGTERM)."""
    check_channels(settings)
    stop = stop or stop_on_signals()
    async with worker_connections(settings, "powerflow-alerts") as (nc, js, engine):
        await ensure_alerts_consumer(js, settings)
        log.info(
            "alerts_starting",
            stream=settings.names.rollups_stream,
            consumer=settings.names.alerts_consumer,
            webhook=bool(settings.alerts_webhook_url),
            email=bool(settings.alerts_smtp_host),
        )
        await AlertsWorker(nc=nc, js=js, engine=engine, settings=settings).run(stop)
    log.info("alerts_stopped")


def main(settings: Settings) -> None:
    """Entry point of ``powerflow alerts``."""
    if settings.alerts_metrics_port:
        start_http_server(settings.alerts_metrics_port, addr=settings.metrics_host)
    asyncio.run(run_alerts(settings))
