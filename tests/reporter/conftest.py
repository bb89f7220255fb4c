"""Fixtures for report tests: settings of the test's own, the fake Claude API, a worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pf_report_testing import FakeAnthropic
from sqlalchemy import Engine

from powerflow_common.settings import Settings, load_settings
from powerflow_reporter.service import ReporterWorker


@pytest.fixture
def fake_claude() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic().start()
    yield fake
    fake.stop()


@pytest.fixture
def report_settings(
    database_url: str,
    nats_url: str,
    redis_url: str,
    namespace: str,
    tmp_path: Path,
    fake_claude: FakeAnthropic,
) -> Callable[..., Settings]:
    """Settings with this test's namespace and reports dir, Claude at the fake, fast retries."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "nats_url": nats_url,
            "redis_url": redis_url,
            "namespace": namespace,
            "reports_dir": tmp_path / "reports",
            "anthropic_api_key": "sk-test-not-a-real-key",
            "anthropic_base_url": fake_claude.url,
            "anthropic_timeout_s": 2.0,
            "report_max_retries": 2,
            "report_min_backoff_s": 0.1,
            "report_max_backoff_s": 0.3,
            "report_time_limit_s": 60.0,
            "report_pdf_enabled": False,
            "reporter_worker_threads": 2,
            "report_reaper_interval_s": 3600.0,
        }
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
def start_worker(engine: Engine) -> Iterator[Callable[[Settings], ReporterWorker]]:
    """Start an in-process reporter worker for given settings; stopped after the test."""
    workers: list[ReporterWorker] = []

    def start(settings: Settings) -> ReporterWorker:
        worker = ReporterWorker(settings, engine, worker_timeout_ms=100)
        worker.start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop(timeout_s=10)
