"""dramatiq on Redis: the broker, the two actors and enqueueing, built from settings at run time.

Nothing here touches Redis or reads settings at import time: actors are declared on a broker
that ``build_worker_broker`` makes, and producers enqueue a plain message by actor name.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import Engine

from powerflow_common.logs import get_logger
from powerflow_common.settings import Settings

__all__ = [
    "GENERATE_ACTOR",
    "RETRIES_EXHAUSTED_ACTOR",
    "build_worker_broker",
    "enqueue_report",
    "producer_broker",
]

log = get_logger(__name__)

GENERATE_ACTOR = "generate_report"
RETRIES_EXHAUSTED_ACTOR = "report_retries_exhausted"

_producers: dict[str, RedisBroker] = {}
_producers_lock = threading.Lock()


def _broker(settings: Settings) -> RedisBroker:
    # redis-py connects lazily: making the broker needs no Redis yet.
    return RedisBroker(  # type: ignore[no-untyped-call]
        url=settings.redis_connection_url(), namespace="powerflow-dramatiq"
    )


def producer_broker(settings: Settings) -> RedisBroker:
    """A broker to enqueue with, one per Redis URL and process."""
    url = settings.redis_connection_url()
    with _producers_lock:
        if url not in _producers:
            _producers[url] = _broker(settings)
        return _producers[url]


def enqueue_report(settings: Settings, report_id: str, *, delay_ms: int | None = None) -> None:
    """Put a report id on the reports queue (the actor takes the id only)."""
    broker = producer_broker(settings)
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=settings.names.reports_queue,
        actor_name=GENERATE_ACTOR,
        args=(report_id,),
        kwargs={},
        options={},
    )
    broker.enqueue(message, delay=delay_ms)


def build_worker_broker(
    settings: Settings,
    engine: Engine,
    *,
    client_factory: Callable[[], Any] | None = None,
) -> RedisBroker:
    """A broker with the generate and retries-exhausted actors declared on the reports queue."""
    from powerflow_reporter.job import mark_exhausted, run_report

    broker = _broker(settings)
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
