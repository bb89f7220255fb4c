"""The backbone end to end: MQTT -> ingest -> JetStream -> writer -> the database (SQLite and
MariaDB), real services."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from conftest import service_env
from pf_testing import (
    FleetBroker,
    Service,
    admit,
    consumer_idle,
    count_rows,
    device_rows,
    fleet_codes,
    fleet_messages,
    publish_all,
    read_rejections,
    sentinel_message,
    wait_for,
)
from powerflow_common.db.models import DEVICES, HOURLY_STATS, READINGS
from powerflow_common.settings import Settings

pytestmark = pytest.mark.both_backends


def test_every_reading_is_stored_exactly_once_even_when_published_twice(
    running: dict[str, Service], broker: FleetBroker, engine: Engine, settings: Settings
) -> None:
    admit(engine, *fleet_codes(50))
    end = datetime.now(UTC).replace(microsecond=0)
    messages = list(fleet_messages(50, 200, end=end))
    assert publish_all(broker.fleet_url, messages) == 10_000
    wait_for(lambda: count_rows(engine) == 10_000, 60, what="10,000 rows")

    with engine.connect() as conn:
        stored = {
            (code, ts): (power, temp, hum, lux)
            for code, ts, power, temp, hum, lux in conn.execute(
                select(
                    DEVICES.c.code,
                    READINGS.c.ts,
                    READINGS.c.power_w,
                    READINGS.c.temperature_c,
                    READINGS.c.humidity_pct,
                    READINGS.c.brightness_lux,
                ).join(DEVICES, DEVICES.c.id == READINGS.c.device_id)
            )
        }
    assert len(stored) == 10_000
    for _topic, payload in messages:
        body = json.loads(payload)
        ts = datetime.fromisoformat(body["timestamp"])
        assert stored[(str(body["deviceCode"]), ts)] == (
            body["electric"],
            body["temp"],
            body["humidity"],
            body["brightness"],
        )
    assert count_rows(engine, "devices") == 50

    # The same 10,000 again, then a sentinel: once it is stored and the writer's consumer
    # has nothing pending, the second copy has been through the whole pipeline.
    publish_all(broker.fleet_url, [*messages, sentinel_message()])
    wait_for(lambda: device_rows(engine, "sentinel") == 1, 60, what="sentinel stored")
    names = settings.names
    wait_for(
        lambda: consumer_idle(settings.nats_url, names.readings_stream, names.writer_consumer),
        30,
        what="writer consumer idle",
    )
    assert count_rows(engine) == 10_001


MALFORMED: list[tuple[str, bytes, str]] = [
    ("power/measurement", b"this is not json", "not_json"),
    ("power/measurement", b"[1, 2, 3]", "not_object"),
    (
        "power/measurement",
        b'{"timestamp":"2024-01-01T00:00:00Z","electric":1}',
        "missing_device_code",
    ),
    ("power/measurement", b'{"deviceCode":1,"electric":1}', "missing_timestamp"),
    (
        "power/measurement",
        b'{"deviceCode":1,"timestamp":"2024-01-01T00:00:00Z","electric":"1"}',
        "wrong_type",
    ),
    (
        "power/measurement",
        b'{"deviceCode":1,"timestamp":"2024-01-01T00:00:00Z","electric":NaN}',
        "not_finite",
    ),
    (
        "power/measurement",
        b'{"deviceCode":1,"timestamp":"2024-01-01T00:00:00Z","humidity":140}',
        "out_of_range",
    ),
    (
        "power/measurement",
        b'{"deviceCode":1,"timestamp":"2036-01-01T00:00:00Z","electric":1}',
        "timestamp_in_future",
    ),
    # Over the original format's 16 KiB, under the broker's 64 KiB packet limit (a larger
    # packet never reaches ingest: tests/test_broker_security.py).
    ("power/measurement", b"{" + b" " * (32 * 1024) + b"}", "too_large"),
    (
        "power/measurement",
        b'{"deviceCode":"\xff","timestamp":"2024-01-01T00:00:00Z"}',
        "invalid_utf8",
    ),
    ("power/measurement", b"[" * 5000 + b"]" * 5000, "too_deep"),
    (
        "power/measurement",
        b'{"deviceCode":"my plug.1","timestamp":"2024-01-01T00:00:00Z"}',
        "invalid_device_code",
    ),
    (
        "power/plug-1/measurement",
        b'{"deviceCode":"plug-2","timestamp":"2024-01-01T00:00:00Z","electric":1}',
        "device_mismatch",
    ),
]


def test_malformed_messages_are_dead_lettered_each_with_its_own_reason(
    running: dict[str, Service], broker: FleetBroker, engine: Engine, settings: Settings
) -> None:
    publish_all(broker.fleet_url, [(topic, payload) for topic, payload, _ in MALFORMED])
    records = read_rejections(
        settings.nats_url, settings.names.rejected_stream, len(MALFORMED), timeout_s=30
    )
    by_reason = {r.reason: r for r in records}
    assert sorted(by_reason) == sorted(reason for _, _, reason in MALFORMED)
    assert len(records) == len(MALFORMED)
    for topic, payload, reason in MALFORMED:
        record = by_reason[reason]
        assert record.topic == topic
        assert record.size == len(payload)
        assert record.payload == payload[: 64 * 1024]
        assert record.stage == "ingest"
        assert record.detail
    assert count_rows(engine) == 0
    # Both services are still running and the next valid reading is stored.
    publish_all(broker.fleet_url, [sentinel_message()])
    wait_for(lambda: device_rows(engine, "sentinel") == 1, 30, what="valid reading stored")
    assert running["ingest"].alive and running["writer"].alive


def test_two_writers_the_aggregator_and_readers_share_one_database_without_lock_errors(
    services: dict[str, Service],
    broker: FleetBroker,
    engine: Engine,
    settings: Settings,
    tmp_path: Path,
) -> None:
    """Separate processes on one database (on SQLite: one file, one writer at a time): every
    reading is stored and rolled up, nobody logs "database is locked" or a failed store, and
    a reader polling meanwhile (as the API does) never fails either."""
    (tmp_path / "second").mkdir()
    env = service_env(settings)
    writer2 = Service("writer", env, tmp_path / "second")
    aggregator = Service("aggregator", env, tmp_path)
    stop_reading = threading.Event()
    read_errors: list[BaseException] = []

    def read_like_the_api() -> None:
        while not stop_reading.is_set():
            try:
                count_rows(engine)
                count_rows(engine, "hourly_stats")
            except BaseException as exc:  # reported by the test's own thread
                read_errors.append(exc)
                return

    reader = threading.Thread(target=read_like_the_api, daemon=True)
    try:
        for service in (services["writer"], writer2, aggregator, services["ingest"]):
            service.start()
        services["ingest"].wait_logged("mqtt_subscribed", timeout_s=60)
        for service in (services["writer"], writer2):
            service.wait_logged("writer_starting", timeout_s=60)
        aggregator.wait_logged("aggregator_starting", timeout_s=60)
        admit(engine, *fleet_codes(20))
        reader.start()
        end = datetime.now(UTC).replace(microsecond=0)
        messages = list(fleet_messages(20, 200, end=end))
        publish_all(broker.fleet_url, messages)
        wait_for(lambda: count_rows(engine) == 4_000, 120, what="4,000 rows")
        names = settings.names
        for stream, consumer in (
            (names.readings_stream, names.writer_consumer),
            (names.persisted_stream, names.aggregator_consumer),
        ):
            wait_for(
                lambda s=stream, c=consumer: consumer_idle(settings.nats_url, s, c),  # type: ignore[misc]
                120,
                what=f"{consumer} idle",
            )
        with engine.connect() as conn:
            samples = conn.execute(select(func.sum(HOURLY_STATS.c.samples))).scalar_one()
        assert samples == 4_000  # every reading counted in exactly one hour
    finally:
        stop_reading.set()
        for service in (writer2, aggregator):
            service.stop()
    reader.join(10)
    assert not read_errors, read_errors[0]
    logs = [services["writer"].log_path, writer2.log_path, aggregator.log_path]
    for log in logs:
        text = log.read_text()
        assert "database is locked" not in text, log
        for failure in ("store_failed", "recompute_failed", "bucket_failed"):
            assert failure not in text, (log, failure)
