"""Prometheus metrics of the API."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "powerflow_api_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
LATENCY = Histogram(
    "powerflow_api_request_seconds",
    "Time to answer an HTTP request",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
RATE_LIMITED = Counter("powerflow_api_rate_limited_total", "Requests refused with 429")
REDIS_UP = Gauge("powerflow_api_redis_up", "1 while Redis answers (rate limits, live tickets)")
REDIS_ERRORS = Counter(
    "powerflow_api_redis_errors_total", "Redis calls that failed (rate limits then fail open)"
)
LIVE_CLIENTS = Gauge("powerflow_api_live_clients", "Open live WebSocket connections")
LIVE_DROPPED = Counter(
    "powerflow_api_live_dropped_total", "Live clients dropped because they read too slowly"
)
LIVE_READINGS = Counter("powerflow_api_live_readings_total", "Readings received from NATS")
DUPLICATE_PUBLISHES = Counter(
    "powerflow_api_duplicate_publishes_total",
    "HTTP ingest publishes JetStream already had (a retried POST), by kind",
    ["kind"],
)
CORRECTIONS = Counter(
    "powerflow_api_corrections_total",
    "Stored values overwritten by operators; totals=stale: their recompute was not acknowledged",
    ["totals"],
)
AUTH_FAILURES = Counter(
    "powerflow_api_auth_failures_total",
    "Requests and live sockets refused for a missing, unknown or revoked key or ticket",
)
AUTH_THROTTLED = Counter(
    "powerflow_api_auth_throttled_total",
    "Requests refused with 429 because their address failed authentication too often",
)
LIVE_REVOKED = Counter(
    "powerflow_api_live_revoked_total", "Live sockets closed because their key was revoked"
)
LIVE_REFUSED = Counter(
    "powerflow_api_live_refused_total",
    "Live sockets refused because their key already had api_live_max_per_key open",
)
# Baselines and savings (controllers/baselines.py).
BASELINE_FITS = Counter(
    "powerflow_api_baseline_fits_total",
    "Baselines fitted and stored, by model kind",
    ["kind"],
)
BASELINE_REFUSALS = Counter(
    "powerflow_api_baseline_refusals_total",
    "Baseline fits, savings and weather imports refused (422), by reason",
    ["reason"],
)
