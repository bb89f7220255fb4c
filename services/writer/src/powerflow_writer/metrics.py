"""Prometheus metrics of the writer."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ROWS_WRITTEN = Counter("powerflow_writer_rows_written_total", "New reading rows committed")
DUPLICATES = Counter(
    "powerflow_writer_duplicates_total", "Readings whose (device, ts) was already stored"
)
CONFLICTS = Counter(
    "powerflow_writer_conflicting_duplicates_total",
    "Duplicates with the same key but other values (the stored values were kept)",
)
ROWS_REFUSED = Counter(
    "powerflow_writer_rows_refused_total", "Rows the database refused, sent to REJECTED"
)
BATCH_SIZE = Histogram(
    "powerflow_writer_batch_readings",
    "Readings per committed batch",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)
COMMIT_LATENCY = Histogram(
    "powerflow_writer_commit_latency_seconds",
    "Time to store one batch in the database",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
REDELIVERIES = Counter(
    "powerflow_writer_redeliveries_total", "READINGS messages delivered more than once"
)
DEAD_LETTERED = Counter(
    "powerflow_writer_dead_lettered_total", "Messages sent to REJECTED by the writer", ["reason"]
)
BATCH_SPLITS = Counter(
    "powerflow_writer_batch_splits_total",
    "Batches that failed on their own and were halved to find the failing message",
)
MESSAGES_FAILED = Counter(
    "powerflow_writer_messages_failed_total",
    "Single messages that failed (retried until the delivery limit, then dead-lettered)",
)
# A reading on the legacy topic of a device not enrolled for it is counted by DEAD_LETTERED
# with reason legacy_not_enrolled.
WAITING_DEVICES = Counter(
    "powerflow_writer_waiting_devices_registered_total",
    "Devices first seen by the writer and registered waiting for admission (counted in no total)",
)
WAITING_READINGS = Counter(
    "powerflow_writer_waiting_readings_total",
    "Readings of devices waiting for admission handed to the database (kept, counted nowhere)",
)
DATABASE_UP = Gauge("powerflow_writer_database_up", "1 while the database accepts writes")
