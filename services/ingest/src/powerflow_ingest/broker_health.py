"""Loss upstream made visible: follow the broker's own drop counter across ingest restarts.

Mosquitto publishes, every ``sys_interval`` (default 10 s) and retained, how many messages it
has dropped since it started (``$SYS/broker/publish/messages/dropped``: full queues of offline
clients and in-flight limits, measured on 2.0.11) and how long it has been up
(``$SYS/broker/uptime``). Most drops happen while ingest is away, so each observation is
compared with the one before it, kept in a JetStream key-value bucket rather than in memory:
a restarted ingest sees the rise its predecessor could not. A restart of the broker resets
its counter; then the whole new value is the rise.

The pure part (:func:`advance`) takes the last record and a new sample and returns the rise
and the next record; :class:`BrokerHealth` is the thin asyncio edge around it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from powerflow_common.backoff import jittered_delay
from powerflow_common.broker_health import (
    NOT_AVAILABLE,
    BrokerHealthRecord,
    decode_record,
    encode_record,
    open_bucket,
)
from powerflow_common.logs import get_logger
from powerflow_common.names import Names
from powerflow_ingest import metrics

log = get_logger(__name__)

DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"
UPTIME_TOPIC = "$SYS/broker/uptime"
SYS_TOPICS = (DROPPED_TOPIC, UPTIME_TOPIC)

# The broker's start time is estimated as (time received - uptime). A retained value is up to
# one sys_interval old when it arrives (10 s by default) and clocks step; a start that moved
# later than this means the broker restarted even when its new uptime is already longer.
START_TIME_TOLERANCE = timedelta(seconds=120)

# Two ingest instances on one broker update one record; a lost compare-and-set re-reads it.
_MAX_CAS_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class Sample:
    """One observation of the broker's counters, paired within one MQTT connection."""

    dropped: int
    uptime_s: int
    observed_at: datetime

    @property
    def started_at(self) -> datetime:
        return self.observed_at - timedelta(seconds=self.uptime_s)


@dataclass(frozen=True, slots=True)
class Rise:
    """Messages the broker dropped between two observations."""

    messages: int
    broker_restarted: bool
    first: bool  # no earlier observation: this one is the baseline, nothing to compare


def parse_dropped(payload: bytes) -> int:
    """``b"2000"`` -> 2000."""
    value = int(payload.decode().strip())
    if value < 0:
        raise ValueError(f"negative drop counter {value}")
    return value


def parse_uptime(payload: bytes) -> int:
    """``b"123 seconds"`` -> 123 (Mosquitto's wording)."""
    number, _, unit = payload.decode().strip().partition(" ")
    if unit not in ("seconds", ""):
        raise ValueError(f"unexpected uptime unit {unit!r}")
    value = int(number)
    if value < 0:
        raise ValueError(f"negative uptime {value}")
    return value


def broker_restarted(last: Sample, new: Sample) -> bool:
    """Whether the broker started again between two observations (its counter began at 0)."""
    return (
        new.uptime_s < last.uptime_s
        or new.dropped < last.dropped
        or new.started_at - last.started_at > START_TIME_TOLERANCE
    )


def rise_between(last: Sample | None, new: Sample) -> Rise:
    """The rise of the drop counter from ``last`` to ``new``; a restart makes all of it new."""
    if last is None:
        return Rise(messages=0, broker_restarted=False, first=True)
    if broker_restarted(last, new):
        return Rise(messages=new.dropped, broker_restarted=True, first=False)
    return Rise(messages=new.dropped - last.dropped, broker_restarted=False, first=False)


def last_sample(record: BrokerHealthRecord | None) -> Sample | None:
    """The observation a record holds, if it holds one."""
    if record is None or record.dropped is None or record.uptime_s is None:
        return None
    return Sample(dropped=record.dropped, uptime_s=record.uptime_s, observed_at=record.observed_at)


def advance(
    record: BrokerHealthRecord | None, broker: str, sample: Sample
) -> tuple[Rise, BrokerHealthRecord]:
    """The rise since ``record`` and the record to keep next; pure."""
    rise = rise_between(last_sample(record), sample)
    kept_rise = (
        (record.last_rise, record.last_rise_at, record.rises_total)
        if record is not None
        else (0, None, 0)
    )
    last_rise, last_rise_at, rises_total = kept_rise
    if rise.messages > 0:
        last_rise, last_rise_at = rise.messages, sample.observed_at
        rises_total += rise.messages
    return rise, BrokerHealthRecord(
        broker=broker,
        available=True,
        observed_at=sample.observed_at,
        dropped=sample.dropped,
        uptime_s=sample.uptime_s,
        last_rise=last_rise,
        last_rise_at=last_rise_at,
        rises_total=rises_total,
    )


def mark_unavailable(
    record: BrokerHealthRecord | None, broker: str, now: datetime
) -> BrokerHealthRecord:
    """The record when the broker publishes no counter; the last observation stays the baseline."""
    if record is None:
        return BrokerHealthRecord(broker=broker, available=False, observed_at=now)
    return BrokerHealthRecord(
        broker=broker,
        available=False,
        observed_at=record.observed_at,
        dropped=record.dropped,
        uptime_s=record.uptime_s,
        last_rise=record.last_rise,
        last_rise_at=record.last_rise_at,
        rises_total=record.rises_total,
    )


class BrokerHealth:
    """Pairs the two $SYS values of each MQTT connection and records every observation.

    paho's thread calls :meth:`subscribed` and :meth:`message` (the ``SysListener`` of
    ``mqtt.MqttSource``); :meth:`run` does the key-value work on the event loop. Only the
    newest sample waits: each is compared with the stored record, so none is needed twice.
    """

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        js: JetStreamContext,
        names: Names,
        broker: str,
        key: str,
        wait_s: float,
    ) -> None:
        self._loop = loop
        self._js = js
        self._names = names
        self._broker = broker
        self._key = key
        self._wait_s = wait_s
        self._connection = -1
        self._dropped: int | None = None
        self._uptime_s: int | None = None
        self._pending: Sample | None = None
        self._pending_unavailable = False
        self._seen_any = False
        self._said_unavailable = False
        self._availability_timer: asyncio.TimerHandle | None = None
        self._bad_payload_logged = False
        self._wake = asyncio.Event()

    # paho thread ---------------------------------------------------------------------------
    def subscribed(self, connection: int) -> None:
        self._loop.call_soon_threadsafe(self._on_subscribed, connection)

    def refused(self, topic: str, reason: str) -> None:
        self._loop.call_soon_threadsafe(self._on_refused, topic, reason)

    def message(self, topic: str, payload: bytes, connection: int) -> None:
        received_at = datetime.now(UTC)
        self._loop.call_soon_threadsafe(self._on_message, topic, payload, connection, received_at)

    # event loop ----------------------------------------------------------------------------
    def _on_subscribed(self, _connection: int) -> None:
        if self._seen_any or self._availability_timer is not None:
            return
        # Mosquitto sends its retained $SYS values on subscription; silence means none exist.
        self._availability_timer = self._loop.call_later(self._wait_s, self._check_available)

    def _on_refused(self, topic: str, reason: str) -> None:
        # No need to wait for retained values a refused subscription can never bring.
        self._unavailable(f"the broker refused the subscription to {topic} ({reason})")

    def _check_available(self) -> None:
        self._unavailable(
            f"the broker published no {DROPPED_TOPIC} within {self._wait_s} s (not Mosquitto,"
            " sys_interval 0, or $SYS not readable)"
        )

    def _unavailable(self, why: str) -> None:
        if self._seen_any or self._said_unavailable:
            return  # said once per process, like the counters' first sighting
        self._said_unavailable = True
        metrics.BROKER_COUNTERS_AVAILABLE.set(0)
        log.warning(
            "broker_drop_counter_unavailable",
            broker=self._broker,
            detail=f"{NOT_AVAILABLE}: {why}; messages it drops stay invisible here",
        )
        self._pending_unavailable = True
        self._wake.set()

    def _on_message(
        self, topic: str, payload: bytes, connection: int, received_at: datetime
    ) -> None:
        if connection != self._connection:
            # A new connection may be to a restarted broker: never pair values across them.
            self._connection, self._dropped, self._uptime_s = connection, None, None
        try:
            if topic == DROPPED_TOPIC:
                self._dropped = parse_dropped(payload)
                metrics.BROKER_DROP_COUNTER.set(self._dropped)
            elif topic == UPTIME_TOPIC:
                self._uptime_s = parse_uptime(payload)
                metrics.BROKER_UPTIME.set(self._uptime_s)
            else:
                return
        except ValueError as exc:
            if not self._bad_payload_logged:
                log.warning("broker_sys_value_unreadable", topic=topic, error=str(exc))
                self._bad_payload_logged = True
            return
        if self._dropped is None or self._uptime_s is None:
            return
        if not self._seen_any:
            self._seen_any = True
            metrics.BROKER_COUNTERS_AVAILABLE.set(1)
        self._pending = Sample(self._dropped, self._uptime_s, received_at)
        self._pending_unavailable = False
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Record observations until ``stop`` is set; a failed write is retried, never fatal."""
        bucket: KeyValue | None = None
        attempt = 0
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                waking = asyncio.create_task(self._wake.wait())
                await asyncio.wait({waking, stopping}, return_when=asyncio.FIRST_COMPLETED)
                waking.cancel()
                if stop.is_set():
                    break
                self._wake.clear()
                try:
                    bucket = bucket or await open_bucket(self._js, self._names)
                    await self._record(bucket)
                    attempt = 0
                except Exception as exc:  # NATS away: keep the newest sample and retry
                    delay = jittered_delay(attempt, base_s=0.5, cap_s=30.0)
                    log.error(
                        "broker_health_not_recorded",
                        error=str(exc) or type(exc).__name__,
                        retry_in_s=round(delay, 2),
                    )
                    attempt += 1
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    self._wake.set()
        finally:
            stopping.cancel()
            if self._availability_timer is not None:
                self._availability_timer.cancel()

    async def _record(self, bucket: KeyValue) -> None:
        sample, self._pending = self._pending, None
        unavailable, self._pending_unavailable = self._pending_unavailable, False
        if sample is None and not unavailable:
            return
        try:
            for _ in range(_MAX_CAS_ATTEMPTS):
                record, revision = await self._read(bucket)
                if sample is not None:
                    rise, new = advance(record, self._broker, sample)
                else:
                    rise, new = None, mark_unavailable(record, self._broker, datetime.now(UTC))
                try:
                    if revision is None:
                        await bucket.create(self._key, encode_record(new))
                    else:
                        await bucket.update(self._key, encode_record(new), last=revision)
                except KeyWrongLastSequenceError:
                    continue  # another ingest on this broker recorded first: compare with theirs
                if rise is not None:
                    self._report(rise, record, new)
                return
            raise RuntimeError(f"broker health record {self._key} kept changing under us")
        except BaseException:
            # Not recorded: the sample waits for the next try (unless a newer one came).
            if self._pending is None and sample is not None:
                self._pending = sample
            self._pending_unavailable = self._pending_unavailable or unavailable
            raise

    async def _read(self, bucket: KeyValue) -> tuple[BrokerHealthRecord | None, int | None]:
        try:
            entry = await bucket.get(self._key)
        except KeyNotFoundError:
            return None, None
        return (decode_record(entry.value) if entry.value else None), entry.revision

    def _report(
        self, rise: Rise, before: BrokerHealthRecord | None, after: BrokerHealthRecord
    ) -> None:
        if rise.first:
            # Drops before powerflow followed this broker cannot be placed in time: say so.
            (log.warning if after.dropped else log.info)(
                "broker_drop_counter_followed",
                broker=self._broker,
                dropped_since_broker_start=after.dropped,
                broker_uptime_s=after.uptime_s,
            )
            return
        if rise.messages <= 0:
            if rise.broker_restarted:
                # Its queues survived only if it persists them: worth a line either way.
                log.warning(
                    "broker_restart_seen",
                    broker=self._broker,
                    broker_uptime_s=after.uptime_s,
                    last_seen_at=before.observed_at.isoformat() if before else None,
                )
            return
        metrics.BROKER_DROPPED_TOTAL.inc(rise.messages)
        log.error(
            "broker_dropped_messages",
            broker=self._broker,
            dropped=rise.messages,
            broker_counter=after.dropped,
            broker_counter_before=before.dropped if before else None,
            broker_restarted=rise.broker_restarted,
            last_seen_at=before.observed_at.isoformat() if before else None,
            broker_uptime_s=after.uptime_s,
            consequence="readings published in that time may be lost before powerflow saw them",
        )
