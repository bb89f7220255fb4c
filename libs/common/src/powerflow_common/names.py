"""Stream, subject, consumer and queue names: the one place they are spelled.

Every name carries the namespace prefix (``POWERFLOW_NAMESPACE``) so that tests and tenants
can share one NATS server and one Redis without meeting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

READINGS_STREAM = "READINGS"
REJECTED_STREAM = "REJECTED"
PERSISTED_STREAM = "PERSISTED"

READINGS_SUBJECT = "readings"
REJECTED_SUBJECT = "rejected"
PERSISTED_SUBJECT = "persisted"

WRITER_CONSUMER = "writer"
AGGREGATOR_CONSUMER = "aggregator"

REPORTS_QUEUE = "reports"

# Alerts: the aggregator announces the hours it rolled up; the alerts worker reads
# them (base-load and daily rules) from its durable consumer.
ROLLUPS_STREAM = "ROLLUPS"
ROLLUPS_SUBJECT = "rolledup"
ALERTS_CONSUMER = "alerts"

# JetStream key-value bucket: the broker's drop counter as ingest last saw it (one key per
# broker), kept outside any process so a restarted ingest and the API read the same state.
BROKER_HEALTH_BUCKET = "broker_health"
# JetStream key-value bucket: which ingest instance holds which MQTT client id ("slot").
INGEST_LEASES_BUCKET = "ingest_leases"
# A key-value bucket is a stream of this name (the client libraries' convention), its keys the
# subjects after KV_SUBJECT_PREFIX + bucket + ".".
KV_STREAM_PREFIX = "KV_"
KV_SUBJECT_PREFIX = "$KV."

INGEST_CLIENT_ID = "powerflow-ingest"


def kv_stream(bucket: str) -> str:
    """The stream behind a key-value bucket."""
    return f"{KV_STREAM_PREFIX}{bucket}"


def kv_subjects(bucket: str) -> str:
    """The subjects of every key of a bucket."""
    return f"{KV_SUBJECT_PREFIX}{bucket}.>"


NAMESPACE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{0,32}$")


@dataclass(frozen=True, slots=True)
class Names:
    """All names for one namespace; the empty namespace gives the plain names."""

    namespace: str = ""

    def __post_init__(self) -> None:
        if not NAMESPACE_PATTERN.fullmatch(self.namespace):
            raise ValueError(
                f"namespace {self.namespace!r} must match {NAMESPACE_PATTERN.pattern} "
                "(it becomes part of stream and subject names)"
            )

    def _stream(self, base: str) -> str:
        return f"{self.namespace}_{base}" if self.namespace else base

    def _subject(self, base: str) -> str:
        return f"{self.namespace}.{base}" if self.namespace else base

    @property
    def readings_stream(self) -> str:
        return self._stream(READINGS_STREAM)

    @property
    def rejected_stream(self) -> str:
        return self._stream(REJECTED_STREAM)

    @property
    def persisted_stream(self) -> str:
        return self._stream(PERSISTED_STREAM)

    def readings_subject(self, partition: str) -> str:
        """Subject of one ingest partition's reading batches."""
        return self._subject(f"{READINGS_SUBJECT}.{partition}")

    @property
    def readings_wildcard(self) -> str:
        return self._subject(f"{READINGS_SUBJECT}.>")

    def rejected_subject(self, reason: str) -> str:
        """Subject of one rejection reason."""
        return self._subject(f"{REJECTED_SUBJECT}.{reason}")

    @property
    def rejected_wildcard(self) -> str:
        return self._subject(f"{REJECTED_SUBJECT}.>")

    @property
    def persisted_subject(self) -> str:
        return self._subject(PERSISTED_SUBJECT)

    @property
    def writer_consumer(self) -> str:
        return self._stream(WRITER_CONSUMER)

    @property
    def aggregator_consumer(self) -> str:
        return self._stream(AGGREGATOR_CONSUMER)

    @property
    def broker_health_bucket(self) -> str:
        """Key-value bucket of the brokers' drop counters (bucket names allow ``_``, not ``.``)."""
        return self._stream(BROKER_HEALTH_BUCKET)

    @property
    def ingest_leases_bucket(self) -> str:
        """Key-value bucket of ingest's slot leases (one key per slot and per live instance)."""
        return self._stream(INGEST_LEASES_BUCKET)

    @property
    def reports_queue(self) -> str:
        return self._stream(REPORTS_QUEUE)

    # Alerts.
    @property
    def rollups_stream(self) -> str:
        return self._stream(ROLLUPS_STREAM)

    @property
    def rollups_subject(self) -> str:
        return self._subject(ROLLUPS_SUBJECT)

    @property
    def alerts_consumer(self) -> str:
        return self._stream(ALERTS_CONSUMER)

    def mqtt_client_id(self, instance: str) -> str:
        """MQTT client id of one ingest instance (one active process per id)."""
        base = f"{INGEST_CLIENT_ID}-{instance}"
        return f"{self.namespace}-{base}" if self.namespace else base
