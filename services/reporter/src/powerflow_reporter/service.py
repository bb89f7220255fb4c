"""``powerflow reporter``: a dramatiq Worker in this process, plus the reaper and the schedule.

The worker runs in-process (not the dramatiq CLI) so that the broker and actors are built from
settings in ``main()``; run as many reporter processes as you like.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

import dramatiq
import redis
from sqlalchemy import Engine

from powerflow_common.db.engine import make_engine
from powerflow_common.logs import get_logger
from powerflow_common.settings import Settings
from powerflow_reporter.fonts import FontMissing, font_css
from powerflow_reporter.maintenance import reap, run_schedule, with_lock
from powerflow_reporter.pdf import PdfUnavailable, load_weasyprint
from powerflow_reporter.queue import build_worker_broker

__all__ = ["ReporterWorker", "main"]

log = get_logger(__name__)


class ReporterWorker:
    """The report worker threads and the maintenance timer; start() and stop()."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        worker_timeout_ms: int = 1000,
        client_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.broker = build_worker_broker(settings, engine, client_factory=client_factory)
        self.worker = dramatiq.Worker(
            self.broker,
            worker_threads=settings.reporter_worker_threads,
            worker_timeout=worker_timeout_ms,
        )
        self._stop = threading.Event()
        self._redis = redis.Redis.from_url(
            settings.redis_connection_url(), socket_timeout=5, socket_connect_timeout=5
        )
        self._timer = threading.Thread(
            target=self._maintain, name="reporter-maintenance", daemon=True
        )

    def start(self) -> None:
        self.worker.start()
        self._timer.start()
        log.info(
            "reporter_starting",
            queue=self.settings.names.reports_queue,
            threads=self.settings.reporter_worker_threads,
            narrative="claude" if self.settings.anthropic_api_key else "template",
            schedule=self.settings.report_schedule_enabled,
        )
        if self.settings.report_pdf_enabled:
            try:  # say at start, not at the first report, that PDFs cannot be made here
                load_weasyprint()
                font_css()
            except (PdfUnavailable, FontMissing) as exc:
                log.error("report_pdf_unavailable", reason=str(exc))

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self.worker.stop(timeout=int(timeout_s * 1000))
        self.broker.close()
        self._redis.close()
        log.info("reporter_stopped")

    def maintain_once(self) -> None:
        """One reaper sweep and, when enabled, one schedule pass (each if it gets the lock)."""
        interval = self.settings.report_reaper_interval_s
        prefix = f"powerflow:{self.settings.names.reports_queue}"
        if with_lock(self._redis, f"{prefix}:reaper", interval * 0.9):
            reap(self.engine, self.settings)
        if self.settings.report_schedule_enabled and with_lock(
            self._redis, f"{prefix}:schedule", interval * 0.9
        ):
            run_schedule(self.engine, self.settings)

    def _maintain(self) -> None:
        while not self._stop.wait(self.settings.report_reaper_interval_s):
            try:
                self.maintain_once()
            except Exception:  # a database or Redis outage: try again next tick
                log.exception("reporter_maintenance_failed")


def main(settings: Settings) -> None:
    """Entry point of ``powerflow reporter``: run until SIGINT or SIGTERM."""
    engine = make_engine(settings.database_url.get_secret_value())
    reporter = ReporterWorker(settings, engine)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    reporter.start()
    try:
        stop.wait()
    finally:
        reporter.stop()
        engine.dispose()
