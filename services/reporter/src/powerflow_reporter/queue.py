"""dramatiq on Redis: the worker's broker and its two actors, built from settings at run time.

Nothing here touches Redis or reads settings at import time: actors are declared on a broker
that ``build_worker_broker`` makes. Whoever asks for a report enqueues a plain message by
actor name (``powerflow_common.report_queue``), without importing the reporter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import Engine

from powerflow_common.logs import get_logger
from powerflow_common.report_queue import GENERATE_ACTOR, RETRIES_EXHAUSTED_ACTOR, redis_broker
from powerflow_common.settings import Settings
from powerflow_reporter.job import mark_exhausted, run_report

__all__ = ["build_worker_broker"]

log = get_logger(__name__)


def build_worker_broker(
    settings: Settings,
    engine: Engine,
    *,
    client_factory: Callable[[], Any] | None = None,
) -> RedisBroker:
    """A broker with the generate and retries-exhausted actors declared on the reports queue."""
    broker = redis_broker(settings)
    queue = settings.names.reports_queue

    def generate_report(report_id: str) -> None:
        run_report(engine, settings, report_id, client_factory=client_factory)

    def report_retries_exhausted(message: dict[str, Any], retry_info: dict[str, Any]) -> None:
        args = message.get("args") or [None]
        mark_exhausted(engine, str(args[0]), int(retry_info.get("retries", 0)))

    dramatiq.actor(
        broker=broker,
        actor_name=GENERATE_ACTOR,
        queue_name=queue,
        max_retries=settings.report_max_retries,
        min_backoff=int(settings.report_min_backoff_s * 1000),
        max_backoff=int(settings.report_max_backoff_s * 1000),
        time_limit=int(settings.report_time_limit_s * 1000),
        on_retry_exhausted=RETRIES_EXHAUSTED_ACTOR,
    )(generate_report)
    dramatiq.actor(
        broker=broker,
        actor_name=RETRIES_EXHAUSTED_ACTOR,
        queue_name=queue,
        max_retries=5,
        min_backoff=1000,
        max_backoff=30_000,
    )(report_retries_exhausted)
    return broker
