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
