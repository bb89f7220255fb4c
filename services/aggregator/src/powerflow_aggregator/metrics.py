"""Prometheus metrics of the aggregator."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

BUCKETS_RECOMPUTED = Counter(
    "powerflow_aggregator_buckets_recomputed_total", "(device, hour) buckets recomputed"
)
FOLLOW_ON_BUCKETS = Counter(
    "powerflow_aggregator_follow_on_buckets_total",
    "Hours of the next counter reading after a gap, recomputed because an earlier hour changed",
)
BUCKETS_FAILED = Counter(
    "powerflow_aggregator_buckets_failed_total", "Buckets whose recompute failed (retried later)"
)
MISSING_FACTOR = Counter(
    "powerflow_aggregator_missing_factor_total",
    "Hours stored without CO2 because no emission factor of the set and region applied",
)
LOCK_TIMEOUTS = Counter(
    "powerflow_aggregator_lock_timeouts_total", "Bucket locks not acquired in time (retried)"
)
LAG_SECONDS = Gauge(
    "powerflow_aggregator_lag_seconds",
    "Time from the writer's commit to the recompute of the latest processed batch",
)
LAG_HISTOGRAM = Histogram(
    "powerflow_aggregator_lag_histogram_seconds",
    "Time from the writer's commit to the recompute of its buckets",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
RECOMPUTE_LATENCY = Histogram(
    "powerflow_aggregator_recompute_seconds",
    "Time to recompute the buckets of one fetched batch of PERSISTED messages",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
REDELIVERIES = Counter(
    "powerflow_aggregator_redeliveries_total", "PERSISTED messages delivered more than once"
)
DEAD_LETTERED = Counter(
    "powerflow_aggregator_dead_lettered_total",
    "Messages sent to REJECTED by the aggregator",
    ["reason"],
)
DATABASE_UP = Gauge("powerflow_aggregator_database_up", "1 while the database answers")

# The retention job (powerflow_aggregator.retention_job), run here every
# POWERFLOW_RETENTION_INTERVAL_S and by `powerflow retention`.
RETENTION_RUNS = Counter(
    "powerflow_retention_runs_total",
    "Runs of the retention job: ok, failed, or skipped (another copy held its lock)",
    ["outcome"],
)
RETENTION_HORIZON = Gauge(
    "powerflow_retention_raw_horizon_seconds",
    "The raw horizon (Unix time): hours before it are frozen; 0 while nothing is frozen",
)
RETENTION_HELD_BACK = Gauge(
    "powerflow_retention_held_back",
    "1 while hours not rolled up keep the raw horizon short of its target",
)
RETENTION_PARTITIONS_ADDED = Counter(
    "powerflow_retention_partitions_added_total", "Monthly readings partitions created ahead"
)
RETENTION_PARTITIONS_DROPPED = Counter(
    "powerflow_retention_partitions_dropped_total", "Monthly readings partitions dropped"
)
RETENTION_ROWS_DELETED = Counter(
    "powerflow_retention_rows_deleted_total", "Raw readings deleted in batches (SQLite)"
)
RETENTION_QUARTERS_BACKFILLED = Counter(
    "powerflow_retention_quarters_backfilled_total",
    "Hours rolled up before migration 0009 recomputed by the retention job to get their quarters",
)
READINGS_PARTITIONED = Gauge(
    "powerflow_retention_readings_partitioned",
    "MySQL/MariaDB: 1 when readings is partitioned by month, 0 when not (run powerflow migrate)",
)
