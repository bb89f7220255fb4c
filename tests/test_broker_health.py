"""Loss upstream made visible: a broker with Mosquitto's default limits, ingest away in a burst.

These tests use a Mosquitto of their own with Mosquitto's DEFAULT limits (1,000 queued
messages per offline client, 20 in flight), not the project's configuration: the point is a
broker powerflow did not configure. Only the listener and a short ``sys_interval`` (1 s
instead of 10 s, so the counter is published promptly) are set.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from conftest import service_env
from pf_testing import (
    FleetBroker,
    Service,
    delete_namespace_streams,
    fleet_messages,
    publish_all,
    wait_for,
)
from powerflow.broker import BROKER_CONFIG, free_port
from powerflow_common.broker_health import (
    NOT_AVAILABLE,
    BrokerHealthRecord,
    drop_alarm,
    read_records,
)
from powerflow_common.jetstream import connect_nats
from powerflow_common.settings import Settings, load_settings

pytestmark = pytest.mark.slow

BURST = 3_000
MOSQUITTO_DEFAULT_QUEUE = 1_000  # max_queued_messages when a configuration does not set it


@dataclass
class PlainMosquitto:
    """A Mosquitto with its defaults: only a listener, and how often it publishes $SYS."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


def start_plain_mosquitto(data_dir: Path, sys_interval_s: int) -> PlainMosquitto:
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nsys_interval {sys_interval_s}\n"
    )
    log = (data_dir / "mosquitto.log").open("ab")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    process = subprocess.Popen([binary, "-c", str(config)], stdout=log, stderr=log)

    def listening() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"mosquitto exited; see {data_dir}/mosquitto.log")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, 10, interval_s=0.05, what="mosquitto to listen")
    return PlainMosquitto(port, process)


@dataclass
class Setup:
    settings: Settings
    mosquitto: PlainMosquitto
    ingest: Service
    metrics_port: int


def make_setup(
    tmp_path: Path, database_url: str, nats_url: str, namespace: str, sys_interval_s: int
) -> Iterator[Setup]:
    mosquitto = start_plain_mosquitto(tmp_path / "mosquitto", sys_interval_s)
    settings = load_settings(
        database_url=database_url,
        nats_url=nats_url,
        namespace=namespace,
        mqtt_url=mosquitto.url,
        nats_timeout_s=2.0,
        broker_sys_wait_s=3.0,
    )
    metrics_port = free_port()
    env = service_env(settings)
    env["POWERFLOW_INGEST_METRICS_PORT"] = str(metrics_port)
    env["POWERFLOW_BROKER_SYS_WAIT_S"] = str(settings.broker_sys_wait_s)
    ingest = Service("ingest", env, tmp_path)
    try:
        yield Setup(settings, mosquitto, ingest, metrics_port)
    finally:
        ingest.stop()
        mosquitto.process.terminate()
        mosquitto.process.wait(10)
        delete_namespace_streams(settings)  # the key-value bucket too


@pytest.fixture
def plain(tmp_path: Path, database_url: str, nats_url: str, namespace: str) -> Iterator[Setup]:
    """ingest (not started) against a default-limits Mosquitto that publishes $SYS every 1 s."""
    yield from make_setup(tmp_path, database_url, nats_url, namespace, sys_interval_s=1)


@pytest.fixture
def no_sys(tmp_path: Path, database_url: str, nats_url: str, namespace: str) -> Iterator[Setup]:
    """ingest (not started) against a Mosquitto with $SYS switched off (sys_interval 0)."""
    yield from make_setup(tmp_path, database_url, nats_url, namespace, sys_interval_s=0)


def metric(port: int, name: str) -> float | None:
    """One unlabelled sample from a process's Prometheus endpoint (None: not there yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return None


def records(settings: Settings) -> list[BrokerHealthRecord]:
    async def read() -> list[BrokerHealthRecord]:
        nc = await connect_nats(settings, name="pf-test-read")
        try:
            return await read_records(nc.jetstream(), settings.names)
        finally:
            await nc.close()

    return asyncio.run(read())


def logged(service: Service, event: str) -> list[dict[str, object]]:
    """The JSON log lines of one event."""
    events = []
    for line in service.log_text().splitlines():
        if f'"{event}"' in line:
            events.append(json.loads(line))
    return events


def test_ingest_away_during_a_burst_of_3000_reports_the_2000_the_broker_dropped(
    plain: Setup,
) -> None:
    plain.ingest.start()
    # The first observation is the baseline the next ingest compares with.
    plain.ingest.wait_logged("broker_drop_counter_followed", timeout_s=30)
    assert records(plain.settings)[0].dropped == 0
    plain.ingest.stop()  # clean stop: its persistent session (and queue) stays on the broker

    publish_all(plain.mosquitto.url, fleet_messages(20, BURST // 20))

    plain.ingest.start()
    port = plain.metrics_port
    reported = wait_for(
        lambda: (
            (metric(port, "powerflow_ingest_broker_dropped_messages_total") or 0) >= 2_000
            and metric(port, "powerflow_ingest_broker_dropped_messages_total")
        ),
        60,
        what="the broker's drops reported",
    )
    wait_for(
        lambda: (
            (metric(port, "powerflow_ingest_readings_published_total") or 0)
            >= MOSQUITTO_DEFAULT_QUEUE
        ),
        60,
        what="the queued readings published",
    )
    published = metric(port, "powerflow_ingest_readings_published_total")
    assert published == MOSQUITTO_DEFAULT_QUEUE  # what the broker kept: its default queue
    # Every reading of the burst is accounted for: published by ingest or reported dropped.
    assert reported + published == BURST
    assert metric(port, "powerflow_ingest_broker_drop_counter") == reported
    [event] = logged(plain.ingest, "broker_dropped_messages")
    assert event["level"] == "error" and event["dropped"] == reported
    assert event["broker_restarted"] is False
    # The API's /readyz reads the same record with the same rule: degraded for the window.
    [record] = records(plain.settings)
    assert record.last_rise == reported and record.rises_total == reported
    alarm = drop_alarm([record], datetime.now(UTC), timedelta(hours=1))
    assert alarm.degraded and f"dropped {int(reported)} messages" in (alarm.detail or "")


def test_a_normal_run_reports_nothing_dropped(plain: Setup) -> None:
    plain.ingest.start()
    plain.ingest.wait_logged("broker_drop_counter_followed", timeout_s=30)
    port = plain.metrics_port
    publish_all(plain.mosquitto.url, fleet_messages(10, 20))
    wait_for(
        lambda: metric(port, "powerflow_ingest_readings_published_total") == 200,
        60,
        what="200 readings published",
    )
    # Two more $SYS rounds after the burst: a drop would be counted by now.
    uptime = metric(port, "powerflow_ingest_broker_uptime_seconds") or 0
    wait_for(
        lambda: (metric(port, "powerflow_ingest_broker_uptime_seconds") or 0) >= uptime + 2,
        30,
        what="the broker's next $SYS rounds",
    )
    assert metric(port, "powerflow_ingest_broker_dropped_messages_total") == 0
    assert metric(port, "powerflow_ingest_broker_drop_counter") == 0
    assert metric(port, "powerflow_ingest_broker_counters_available") == 1
    assert not logged(plain.ingest, "broker_dropped_messages")
    [record] = records(plain.settings)
    assert record.available and record.dropped == 0 and record.last_rise_at is None
    assert not drop_alarm([record], datetime.now(UTC), timedelta(hours=1)).degraded


def test_a_broker_without_sys_is_said_once_and_ingest_keeps_working(no_sys: Setup) -> None:
    no_sys.ingest.start()
    no_sys.ingest.wait_logged("broker_drop_counter_unavailable", timeout_s=30)
    port = no_sys.metrics_port
    publish_all(no_sys.mosquitto.url, fleet_messages(5, 4))
    wait_for(
        lambda: metric(port, "powerflow_ingest_readings_published_total") == 20,
        60,
        what="20 readings published",
    )
    assert metric(port, "powerflow_ingest_broker_counters_available") == 0
    assert len(logged(no_sys.ingest, "broker_drop_counter_unavailable")) == 1
    record = wait_for(lambda: records(no_sys.settings), 10, what="the record")[0]
    assert not record.available
    alarm = drop_alarm([record], datetime.now(UTC), timedelta(hours=1))
    assert not alarm.degraded and NOT_AVAILABLE in (alarm.detail or "")


def test_the_projects_broker_publishes_its_drop_counter_to_ingest(broker: FleetBroker) -> None:
    setting = dict(
        line.split(None, 1)
        for line in BROKER_CONFIG.read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert int(setting["sys_interval"]) > 0  # 0 would switch the drop counter off
    seen: dict[str, bytes] = {}
    # ingest's own account: its role must let it read the counters.
    login = urlsplit(broker.ingest_url())
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=login.username or "")
    client.username_pw_set(login.username, login.password)

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        seen.setdefault(message.topic, bytes(message.payload))

    client.on_message = on_message
    client.connect("127.0.0.1", broker.port)
    client.subscribe([("$SYS/broker/publish/messages/dropped", 0), ("$SYS/broker/uptime", 0)])
    client.loop_start()
    try:
        wait_for(lambda: len(seen) == 2, 15, what="the retained $SYS counters")
    finally:
        client.loop_stop()
        client.disconnect()
    assert seen["$SYS/broker/publish/messages/dropped"] == b"0"
    assert seen["$SYS/broker/uptime"].endswith(b" seconds")
