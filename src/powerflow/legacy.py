"""``powerflow import legacy``: the prototype's ``power_readings`` table into readings.

Rows go through the same validation as ingest and are stored by the writer's own store
function, so an import is exactly as idempotent as the pipeline; then the touched hours are
rolled up.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, create_engine, text

from powerflow_aggregator.rollup import RecomputeResult, RollupConfig, recompute_buckets
from powerflow_common.errors import Rejected
from powerflow_common.settings import Settings
from powerflow_common.validation import limits_from_settings, validate
from powerflow_common.wire import Bucket, Reading
from powerflow_writer.store import store_readings

LEGACY_TABLE = "power_readings"
LEGACY_IMPORT_ADMITTER = "import-legacy"
LEGACY_COLUMNS = (
    "timestamp",
    "device_code",
    "temperature",
    "humidity",
    "brightness",
    "electric",
    "created_at",
)
MAX_EXAMPLES = 20


@dataclass(slots=True)
class LegacyImport:
    """What an import read, stored, rejected and rolled up."""

    read: int = 0
    inserted: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    examples: list[tuple[str, str]] = field(default_factory=list)  # (row, reason: detail)
    buckets: set[Bucket] = field(default_factory=set)
    rollup: RecomputeResult | None = None

    def reject(self, row: str, reason: str, detail: str) -> None:
        """Count a rejected row, keeping the first few as examples."""
        self.rejected[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append((row, f"{reason}: {detail}"))


def legacy_reading(row: Any, source_zone: ZoneInfo) -> Reading:
    """The canonical reading of one prototype row (timestamps without offset are in ``zone``)."""
    if row.device_code is None or not str(row.device_code).strip():
        raise Rejected("missing_device_code", "device_code is empty")
    if row.timestamp is None:
        raise Rejected("missing_timestamp", "timestamp is empty")
    ts: datetime = row.timestamp
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=source_zone)
    return Reading(
        device_code=str(row.device_code).strip(),
        ts=ts.astimezone(UTC),
        power_w=_number(row.electric),
        temperature_c=_number(row.temperature),
        humidity_pct=_number(row.humidity),
        brightness_lux=_number(row.brightness),
    )


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def read_legacy(url: str, chunk_rows: int) -> Iterator[Sequence[Any]]:
    """The source table in chunks, streamed (the table may not fit in memory)."""
    source = create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with source.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(
                text(
                    f"SELECT {', '.join(f'`{c}`' for c in LEGACY_COLUMNS)} FROM {LEGACY_TABLE}"
                    " ORDER BY `device_code`, `timestamp`"
                )
            )
            yield from result.partitions(chunk_rows)
    finally:
        source.dispose()


def legacy_row_count(url: str) -> int:
    """How many rows the source table has (for the progress bar)."""
    source = create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with source.connect() as conn:
            return int(conn.execute(text(f"SELECT COUNT(*) FROM {LEGACY_TABLE}")).scalar_one())
    finally:
        source.dispose()


def import_legacy(
    engine: Engine,
    source_url: str,
    settings: Settings,
    *,
    source_timezone: str = "UTC",
    chunk_rows: int = 5_000,
    on_rows: Callable[[int], None] | None = None,
    on_bucket: Callable[[Bucket], None] | None = None,
    before_rollup: Callable[[int], None] | None = None,
) -> LegacyImport:
    """Validate, store and roll up every row of the prototype's table; safe to run twice."""
    zone = ZoneInfo(source_timezone)
    limits = limits_from_settings(settings)
    max_gap = timedelta(seconds=settings.max_gap_s)
    outcome = LegacyImport()
    for chunk in read_legacy(source_url, chunk_rows):
        now = datetime.now(UTC)
        valid: list[Reading] = []
        for row in chunk:
            outcome.read += 1
            try:
                valid.append(validate(legacy_reading(row, zone), now, limits))
            except Rejected as exc:
                outcome.reject(_describe(row), exc.reason, exc.detail)
            except (TypeError, ValueError) as exc:  # a column of an unexpected type
                outcome.reject(_describe(row), "wrong_type", str(exc))
        if valid:
            # The prototype's own fleet, imported by an operator: admitted (its history is
            # what the import is for) and, like the devices migration 0006 found, allowed on
            # the prototype's shared topic they publish on.
            stored = store_readings(
                engine,
                valid,
                received_at=now,
                max_gap=max_gap,
                admitted_by=LEGACY_IMPORT_ADMITTER,
                legacy_topic=True,
            )
            outcome.inserted += stored.inserted
            outcome.duplicates += stored.duplicates
            outcome.buckets.update(stored.buckets)
            for reading, error in stored.refused:
                outcome.reject(
                    f"{reading.device_code} {reading.ts.isoformat()}", "db_refused", error
                )
            for reading in stored.beyond_retention:  # its hour is frozen: not stored
                outcome.reject(
                    f"{reading.device_code} {reading.ts.isoformat()}",
                    "beyond_retention",
                    "before the raw horizon (POWERFLOW_RAW_RETENTION_DAYS): its hour is frozen",
                )
        if on_rows is not None:
            on_rows(len(chunk))
    if before_rollup is not None:
        before_rollup(len(outcome.buckets))
    outcome.rollup = recompute_buckets(
        engine, outcome.buckets, RollupConfig.from_settings(settings), on_bucket=on_bucket
    )
    return outcome


def _describe(row: Any) -> str:
    return f"{str(row.device_code)[:40]!s} {row.timestamp}"
