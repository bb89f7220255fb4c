"""Asking for a report: a dramatiq message on Redis, sent by actor name.

The API, the CLI and the reporter's own scheduler enqueue here; only the reporter declares
the actors (``powerflow_reporter.queue``), so nothing that asks for a report needs the
reporter's dependencies (WeasyPrint, anthropic). Nothing touches Redis at import time.
"""

from __future__ import annotations

import threading
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from powerflow_common.settings import Settings

__all__ = ["GENERATE_ACTOR", "RETRIES_EXHAUSTED_ACTOR", "enqueue_report", "redis_broker"]

GENERATE_ACTOR = "generate_report"
RETRIES_EXHAUSTED_ACTOR = "report_retries_exhausted"

_producers: dict[str, RedisBroker] = {}
_producers_lock = threading.Lock()


def redis_broker(settings: Settings) -> RedisBroker:
    """A dramatiq broker on the settings' Redis (redis-py connects lazily: no Redis yet)."""
    return RedisBroker(  # type: ignore[no-untyped-call]
        url=settings.redis_connection_url(), namespace="powerflow-dramatiq"
    )


def producer_broker(settings: Settings) -> RedisBroker:
    """A broker to enqueue with, one per Redis URL and process."""
    url = settings.redis_connection_url()
    with _producers_lock:
        if url not in _producers:
            _producers[url] = redis_broker(settings)
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
