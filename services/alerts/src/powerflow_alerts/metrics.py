"""Prometheus metrics of the alerts worker."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

ALERTS_RAISED = Counter(
    "powerflow_alerts_raised_total", "Alerts raised by this worker copy", ["kind"]
)
ALERTS_CLEARED = Counter(
    "powerflow_alerts_cleared_total", "Alerts cleared by this worker copy", ["kind"]
)
OPEN_ALERTS = Gauge("powerflow_alerts_open", "Open alerts (all copies), as of the last refresh")
RULES_LOADED = Gauge("powerflow_alerts_rules", "Enabled rules this worker evaluates")
RULES_INVALID = Gauge(
    "powerflow_alerts_rules_invalid", "Enabled rules skipped because their parameters are wrong"
)
DELIVERIES_ATTEMPTED = Counter(
    "powerflow_alerts_deliveries_attempted_total", "Notification attempts", ["channel"]
)
DELIVERIES_FAILED = Counter(
    "powerflow_alerts_deliveries_failed_total", "Notification attempts that failed", ["channel"]
)
OUTBOX_BACKLOG = Gauge(
    "powerflow_alerts_outbox_backlog", "Notifications written and not delivered yet"
)
OUTBOX_OLDEST_SECONDS = Gauge(
    "powerflow_alerts_outbox_oldest_seconds",
    "Age of the oldest undelivered notification this copy tried (0 when none)",
)
LIVE_BATCHES_DROPPED = Counter(
    "powerflow_alerts_live_batches_dropped_total",
    "Live reading batches dropped because the evaluation queue was full (or undecodable)",
    ["reason"],
)
LIVE_BATCHES_JUDGED = Counter(
    "powerflow_alerts_live_batches_judged_total",
    "Live reading batches judged (every live rule of their devices evaluated)",
)
LIVE_READINGS_SKIPPED = Counter(
    "powerflow_alerts_live_readings_skipped_total",
    "Live readings not judged: unknown_device (until the next refresh), local_time (a device "
    "clock without an offset: judged from the stored readings at the next start)",
    ["reason"],
)
ROLLUPS_HANDLED = Counter(
    "powerflow_alerts_rollups_handled_total", "ROLLUPS messages handled (base-load, daily rules)"
)
EVALUATION_ERRORS = Counter(
    "powerflow_alerts_evaluation_errors_total", "Rule evaluations that failed", ["kind"]
)
DEAD_LETTERED = Counter(
    "powerflow_alerts_dead_lettered_total",
    "Messages sent to REJECTED by the alerts worker",
    ["reason"],
)
DATABASE_UP = Gauge("powerflow_alerts_database_up", "1 while the database answers")
