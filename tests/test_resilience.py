"""Crashes and outages: kill -9 of ingest or writer, a database outage, refused rows."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from pf_testing import (
    FleetBroker,
    NatsServer,
    Service,
    TcpProxy,
    admit,
    count_rows,
    device_rows,
    fleet_codes,
    fleet_messages,
    publish_all,
    read_rejections,
    sentinel_message,
    wait_for,
)
from powerflow_common.jetstream import connect_nats
from powerflow_common.settings import Settings
from powerflow_common.wire import Reading, ReadingBatch, json_encoder

pytestmark = pytest.mark.slow


def publish_in_background(url: str, messages: list[tuple[str, str]]) -> threading.Thread:
    thread = threading.Thread(target=publish_all, args=(url, messages), daemon=True)
    thread.start()
    return thread


@pytest.mark.both_backends
def test_writer_killed_mid_stream_loses_and_duplicates_nothing(
    running: dict[str, Service], broker: FleetBroker, engine: Engine
) -> None:
    admit(engine, *fleet_codes(50))
    messages = list(fleet_messages(50, 200))
    publisher = publish_in_background(broker.fleet_url, messages)
    wait_for(lambda: count_rows(engine) >= 1_500, 60, interval_s=0.02, what="first rows")
    running["writer"].kill9()
    stored_at_kill = count_rows(engine)
    running["writer"].start()
    publisher.join(60)
    wait_for(lambda: count_rows(engine) == 10_000, 90, what="all 10,000 rows")
    assert stored_at_kill < 10_000, "the writer was killed after the stream, not in it"
    publish_all(broker.fleet_url, [sentinel_message()])
    wait_for(lambda: device_rows(engine, "sentinel") == 1, 30)
    assert count_rows(engine) == 10_001


@pytest.mark.both_backends
def test_ingest_killed_and_kept_down_loses_nothing_the_broker_acknowledged(
    running: dict[str, Service], broker: FleetBroker, engine: Engine
) -> None:
    admit(engine, *fleet_codes(20))
    end = datetime.now(UTC).replace(microsecond=0)
    first = list(fleet_messages(20, 150, end=end - timedelta(hours=1)))  # 3,000
    second = list(fleet_messages(20, 150, end=end))  # 3,000 more while ingest is down
    publisher = publish_in_background(broker.fleet_url, first)
    wait_for(lambda: count_rows(engine) >= 500, 60, interval_s=0.02, what="first rows")
    running["ingest"].kill9()
    publisher.join(60)
    publish_all(broker.fleet_url, second)
    stored_while_down = count_rows(engine)
    assert stored_while_down < 6_000 - 2_000
    running["ingest"].start()
    wait_for(lambda: count_rows(engine) == 6_000, 90, what="all 6,000 rows")


# A network outage of the database server: MariaDB's alone (SQLite is a file, not a server).
@pytest.mark.parametrize("database_backend", ["mariadb"], indirect=True)
def test_database_outage_delays_readings_but_loses_none(
    services: dict[str, Service], broker: FleetBroker, engine: Engine, settings: Settings
) -> None:
    url = make_url(settings.database_url.get_secret_value())
    proxy = TcpProxy(url.port or 3306).start()
    services["writer"].env["POWERFLOW_DATABASE_URL"] = url.set(port=proxy.port).render_as_string(
        hide_password=False
    )
    services["writer"].start()
    services["ingest"].start()
    services["ingest"].wait_logged("mqtt_subscribed")
    admit(engine, *fleet_codes(20))
    end = datetime.now(UTC).replace(microsecond=0)
    publish_all(broker.fleet_url, list(fleet_messages(20, 50, end=end - timedelta(hours=1))))
    wait_for(lambda: count_rows(engine) == 1_000, 60, what="rows before the outage")
    proxy.cut()
    outage_ends = threading.Timer(30.0, proxy.restore)
    outage_ends.start()
    try:
        publish_all(broker.fleet_url, list(fleet_messages(20, 100, end=end)))
        services["writer"].wait_logged("store_failed", timeout_s=25)
        assert count_rows(engine) == 1_000
        wait_for(lambda: count_rows(engine) == 3_000, 90, what="all rows after the outage")
    finally:
        outage_ends.cancel()
        proxy.cut()
    assert "store_recovered" in services["writer"].log_text()
    assert services["writer"].alive


@pytest.mark.both_backends
def test_row_the_database_refuses_is_dead_lettered_and_the_rest_stored(
    running: dict[str, Service], engine: Engine, settings: Settings
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    readings = [
        Reading(device_code=f"dev-{i}", ts=now - timedelta(seconds=i), power_w=float(i))
        for i in range(9)
    ]
    # Past ingest's validation (published straight to the stream): too long for its column.
    readings.append(Reading(device_code="dev-bad", ts=now, power_w=1.0, firmware="x" * 100))

    async def publish() -> None:
        nc = await connect_nats(settings, name="pf-test")
        batch = ReadingBatch(readings=readings, ingested_at=now, source="test")
        await nc.jetstream().publish(
            settings.names.readings_subject("test"), json_encoder.encode(batch)
        )
        await nc.close()

    asyncio.run(publish())
    wait_for(lambda: count_rows(engine) == 9, 30, what="the nine good rows")
    [record] = read_rejections(settings.nats_url, settings.names.rejected_stream, 1, 30)
    assert record.reason == "db_refused"
    assert record.stage == "writer"
    assert record.reading is not None and record.reading.device_code == "dev-bad"
    assert "too long" in record.detail.lower()


def test_nats_outage_keeps_readings_in_the_broker_until_it_returns(
    services: dict[str, Service], broker: FleetBroker, engine: Engine, tmp_path: Path
) -> None:
    nats_server = NatsServer(tmp_path / "jetstream").start()
    try:
        for service in services.values():
            service.env["POWERFLOW_NATS_URL"] = nats_server.url
        services["writer"].start()
        services["ingest"].start().wait_logged("mqtt_subscribed")
        admit(engine, *fleet_codes(10))
        end = datetime.now(UTC).replace(microsecond=0)
        publish_all(broker.fleet_url, list(fleet_messages(10, 50, end=end - timedelta(hours=1))))
        wait_for(lambda: count_rows(engine) == 500, 60, what="rows before the outage")

        nats_server.stop()
        publish_all(broker.fleet_url, list(fleet_messages(10, 100, end=end)))
        services["ingest"].wait_logged("jetstream_publish_failed", timeout_s=30)
        assert count_rows(engine) == 500
        nats_server.start()
        wait_for(lambda: count_rows(engine) == 1_500, 90, what="all rows after NATS returns")
        assert services["ingest"].alive and services["writer"].alive
    finally:
        for service in services.values():
            service.stop()
        nats_server.stop()
