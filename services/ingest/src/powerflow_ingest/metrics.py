"""Prometheus metrics of the ingest bridge."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_RECEIVED = Counter(
    "powerflow_ingest_messages_received_total", "MQTT messages received", ["format"]
)
READINGS_PUBLISHED = Counter(
    "powerflow_ingest_readings_published_total", "Readings acknowledged by JetStream"
)
BATCHES_PUBLISHED = Counter(
    "powerflow_ingest_batches_published_total", "Reading batches acknowledged by JetStream"
)
MESSAGES_REJECTED = Counter(
    "powerflow_ingest_messages_rejected_total", "Messages dead-lettered to REJECTED", ["reason"]
)
MESSAGES_IGNORED = Counter(
    "powerflow_ingest_messages_ignored_total",
    "Messages with nothing to store: unclaimed topics, retained replays, non-status events",
    ["reason"],
)
PUBLISH_LATENCY = Histogram(
    "powerflow_ingest_publish_latency_seconds",
    "From JetStream publish to its acknowledgement",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PUBLISH_FAILURES = Counter(
    "powerflow_ingest_publish_failures_total", "JetStream publishes that failed and were retried"
)
MQTT_REDELIVERIES_HELD = Counter(
    "powerflow_ingest_mqtt_redeliveries_held_total",
    "MQTT messages the broker sent again on the same connection while ingest still held the"
    " first copy (nats-server's ack_wait): dropped, the first copy's ack covers both",
)
MQTT_CONNECTED = Gauge(
    "powerflow_ingest_mqtt_connected",
    "1 while every slot this instance holds is connected to the MQTT broker (0 holding none)",
)
SLOT_CONNECTED = Gauge(
    "powerflow_ingest_slot_connected", "1 while this slot's MQTT session is connected", ["slot"]
)
SLOTS_HELD = Gauge("powerflow_ingest_slots_held", "Slots (MQTT client ids) this instance leases")
SLOTS_CLAIMED = Counter(
    "powerflow_ingest_slots_claimed_total",
    "Slots this instance claimed: at start, by balance, or adopted from an instance that died",
)
SLOTS_RELEASED = Counter(
    "powerflow_ingest_slots_released_total",
    "Slots this instance let go on purpose (balance, shutdown)",
)
LEASES_LOST = Counter(
    "powerflow_ingest_leases_lost_total",
    "Slots dropped because their lease could not be renewed in time or was taken: the MQTT"
    " session is disconnected at once; a rise means NATS trouble or a too short lease TTL",
)
NATS_CONNECTED = Gauge("powerflow_ingest_nats_connected", "1 while connected to NATS")
UNACKED_MESSAGES = Gauge(
    "powerflow_ingest_unacked_messages", "MQTT messages received but not yet acknowledged"
)
DUPLICATE_PUBLISHES = Counter(
    "powerflow_ingest_duplicate_publishes_total",
    "Publishes JetStream acknowledged as duplicates of one it already had (same content id):"
    " retries and redelivered MQTT messages; a rise without outages deserves a look",
    ["kind"],
)
STREAM_FULL = Gauge(
    "powerflow_ingest_stream_full",
    "1 while a publish waits because its stream is at its byte limit (MQTT acks held back)",
)
STREAM_USAGE_RATIO = Gauge(
    "powerflow_ingest_stream_usage_ratio",
    "A stream's bytes over its byte limit (0..1), checked every stream_check_interval_s",
    ["stream"],
)
REJECTED_EVICTED = Counter(
    "powerflow_ingest_rejected_evicted_total",
    "REJECTED records the stream removed by its limits (bytes or age) since ingest started",
    ["limit"],
)
# The broker's own $SYS counters (Mosquitto): what it dropped before powerflow saw it.
BROKER_DROPPED_TOTAL = Counter(
    "powerflow_ingest_broker_dropped_messages",
    "Messages the MQTT broker dropped (full queues, in-flight limits), as rises of its own"
    " counter reported by this process, including rises that happened while ingest was away",
)
BROKER_DROP_COUNTER = Gauge(
    "powerflow_ingest_broker_drop_counter",
    "The broker's raw $SYS/broker/publish/messages/dropped (since the broker started)",
)
BROKER_UPTIME = Gauge("powerflow_ingest_broker_uptime_seconds", "The broker's $SYS/broker/uptime")
BROKER_COUNTERS_AVAILABLE = Gauge(
    "powerflow_ingest_broker_counters_available",
    "1 once the broker published its drop counter, 0 when it publishes none",
)
