"""ingest watches the streams it fills: a backlog near its limit, REJECTED records evicted.

READINGS and PERSISTED refuse publishes at their byte limit (ingest then holds); this says so
before it happens. REJECTED drops its oldest records at its limits; since nothing else
deletes from it, the head's advance is exactly what its limits evicted.
"""

from __future__ import annotations

import asyncio
import contextlib

from nats.js import JetStreamContext

from powerflow_common.jetstream import StreamUsage, stream_usage, usage_problems
from powerflow_common.logs import get_logger
from powerflow_common.settings import Settings
from powerflow_ingest import metrics

log = get_logger(__name__)

# REJECTED within this share of its byte limit: what it evicted went for want of space.
NEAR_FULL_RATIO = 0.9
# While a problem lasts it is logged again every this many checks (once a few minutes).
REPEAT_EVERY_CHECKS = 20


class StreamWatch:
    """Turns successive stream usages into metrics and logs; holds only what it saw last."""

    def __init__(self, settings: Settings) -> None:
        self._alert_ratio = settings.stream_usage_alert_ratio
        self._rejected = settings.names.rejected_stream
        self._rejected_removed: int | None = None
        self._problems: set[str] = set()
        self._checks = 0

    def observe(self, usages: list[StreamUsage]) -> list[str]:
        """Record one check; returns the problems now present."""
        self._checks += 1
        for usage in usages:
            metrics.STREAM_USAGE_RATIO.labels(usage.name).set(usage.ratio)
            if usage.name == self._rejected:
                self._count_evictions(usage)
        problems = usage_problems(usages, self._alert_ratio, frozenset({self._rejected}))
        for problem in problems:
            if problem not in self._problems or self._checks % REPEAT_EVERY_CHECKS == 0:
                log.error("stream_problem", problem=problem)
        for gone in self._problems - set(problems):
            log.warning("stream_problem_cleared", problem=gone)
        self._problems = set(problems)
        return problems

    def _count_evictions(self, usage: StreamUsage) -> None:
        previous, self._rejected_removed = self._rejected_removed, usage.removed
        if previous is None:
            if usage.removed:
                log.info("rejected_evicted_before_start", stream=usage.name, records=usage.removed)
            return
        evicted = usage.removed - previous
        if evicted <= 0:
            return
        limit = "bytes" if usage.ratio >= NEAR_FULL_RATIO else "age"
        metrics.REJECTED_EVICTED.labels(limit).inc(evicted)
        log.warning(
            "rejected_records_evicted",
            stream=usage.name,
            records=evicted,
            limit=limit,
            kept=usage.messages,
            bytes=usage.bytes,
        )


async def watch_streams(js: JetStreamContext, settings: Settings, stop: asyncio.Event) -> None:
    """Check the streams every ``stream_check_interval_s`` until ``stop`` is set."""
    watch = StreamWatch(settings)
    while not stop.is_set():
        try:
            watch.observe(await stream_usage(js, settings))
        except Exception as exc:  # NATS away or a stream missing: said, and checked again
            log.warning("stream_check_failed", error=str(exc) or type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.stream_check_interval_s)
