"""Enrolled devices against the real closed broker, ingest and writer: each device publishes
only on its own topics; revoking disconnects it at once and keeps its past readings."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from conftest import service_env
from pf_testing import DeviceConnection, Service, device_rows, wait_for
from powerflow.broker import Broker, account_url
from powerflow_common.broker_admin import BrokerAdmin
from powerflow_common.enrolment import (
    Enrolment,
    enroll_device,
    list_enrolments,
    revoke_device,
)
from powerflow_common.errors import EnrolmentError
from powerflow_common.settings import Settings

pytestmark = pytest.mark.both_backends

CONNECT_TIMEOUT_S = 10.0
STORE_TIMEOUT_S = 30.0
BY = "test"


@pytest.fixture
def admin(broker: Broker) -> Iterator[BrokerAdmin]:
    with broker.admin() as accounts:
        yield accounts


@contextmanager
def connected(broker: Broker, enrolment: Enrolment) -> Iterator[DeviceConnection]:
    device = DeviceConnection(broker, enrolment.username, enrolment.password)
    try:
        assert device.accepted, f"{enrolment.username} was refused: {device.reason}"
        yield device
    finally:
        device.close()


def reading(code: str, at: datetime, watts: float = 100.0) -> str:
    stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps({"deviceCode": code, "timestamp": stamp, "electric": watts})


def codes() -> tuple[str, str, str]:
    tag = uuid.uuid4().hex[:6]
    return f"a-{tag}", f"b-{tag}", f"leg-{tag}"


def stored(engine: Engine, code: str, count: int) -> None:
    wait_for(lambda: device_rows(engine, code) >= count, STORE_TIMEOUT_S, what=f"{code} rows")


def test_a_device_stores_on_its_own_topic_and_nothing_as_another(
    running: dict[str, Service], broker: Broker, admin: BrokerAdmin, engine: Engine
) -> None:
    a, b, legacy = codes()
    enrol_a = enroll_device(engine, admin, a, by=BY)
    enroll_device(engine, admin, b, by=BY)
    enrol_legacy = enroll_device(engine, admin, legacy, legacy=True, by=BY)
    now = datetime.now(UTC) - timedelta(seconds=30)
    with connected(broker, enrol_a) as device:
        device.publish(f"power/{a}/measurement", reading(a, now))
        # As B, on B's topic and on the shared topic; then as itself on the shared topic,
        # which it was not enrolled for: the broker drops all three.
        device.publish(f"power/{b}/measurement", reading(b, now))
        device.publish("power/measurement", reading(b, now + timedelta(seconds=1)))
        device.publish("power/measurement", reading(a, now + timedelta(seconds=2)))
        # Sent last on the same connection: once it is stored, the others would have been.
        device.publish(f"power/{a}/measurement", reading(a, now + timedelta(seconds=3)))
        stored(engine, a, 2)
    with connected(broker, enrol_legacy) as device:
        device.publish("power/measurement", reading(legacy, now))
        stored(engine, legacy, 1)
    assert device_rows(engine, a) == 2
    assert device_rows(engine, b) == 0


def test_revoke_disconnects_refuses_and_keeps_the_readings(
    running: dict[str, Service], broker: Broker, admin: BrokerAdmin, engine: Engine
) -> None:
    a, b, _ = codes()
    enrol_a = enroll_device(engine, admin, a, by=BY)
    enrol_b = enroll_device(engine, admin, b, by=BY)
    now = datetime.now(UTC) - timedelta(seconds=30)
    device = DeviceConnection(broker, enrol_a.username, enrol_a.password)
    try:
        assert device.accepted
        device.publish(f"power/{a}/measurement", reading(a, now))
        stored(engine, a, 1)
        done = revoke_device(engine, admin, a)
        assert done.account_removed
        # Its open connection is closed by the broker, at once.
        assert device.disconnected.wait(CONNECT_TIMEOUT_S), "the revoked device stayed connected"
    finally:
        device.close()
    again = DeviceConnection(broker, enrol_a.username, enrol_a.password)
    try:
        assert not again.accepted, "a revoked device's credentials were accepted"
        again.client.publish(f"power/{a}/measurement", reading(a, now + timedelta(seconds=1)))
    finally:
        again.close()
    with connected(broker, enrol_b) as other:  # a sentinel through the same pipeline
        other.publish(f"power/{b}/measurement", reading(b, now))
        stored(engine, b, 1)
    assert device_rows(engine, a) == 1  # kept, and nothing new
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT revoked_at, admitted_at, legacy_topic FROM devices WHERE code = :c"),
            {"c": a},
        ).one()
    assert row.revoked_at is not None and row.admitted_at is not None and not row.legacy_topic
    assert revoke_device(engine, admin, a).account_removed is False  # again: harmless


def test_enrolling_again_rotates_the_password(
    broker: Broker, admin: BrokerAdmin, engine: Engine
) -> None:
    a, _, _ = codes()
    first = enroll_device(engine, admin, a, by=BY)
    second = enroll_device(engine, admin, a, formats=["original", "tasmota"], by=BY)
    assert not second.created and first.password != second.password
    assert "tele/" + a + "/+" in second.topics
    old = DeviceConnection(broker, first.username, first.password)
    old.close()
    assert not old.accepted
    with connected(broker, second):
        pass


def test_a_broker_failure_between_the_steps_never_grants_unrecorded_access(
    broker: Broker, engine: Engine
) -> None:
    a, _, _ = codes()
    with broker.admin(timeout_s=2.0) as admin:
        broker.stop()  # the database step succeeds, the broker step cannot
        with pytest.raises(EnrolmentError) as caught:
            enroll_device(engine, admin, a, by=BY)
        assert caught.value.reason == "broker_failed"
    broker.start()
    with broker.admin() as admin:
        listing = list_enrolments(engine, admin)
        (state,) = [d for d in listing.devices if d.code == a]
        # Recorded as enrolled, and visibly without credentials: no access nobody knows of.
        assert state.has_account is False and "no broker account" in state.state
        enrolment = enroll_device(engine, admin, a, by=BY)  # enrolling again repairs it
        assert list_enrolments(engine, admin).devices[0].state == "enrolled"
        # An account no enrolled device explains is reported.
        admin.set_client("device-ghost", "x" * 32, publish=["power/ghost/measurement"])
        assert list_enrolments(engine, admin).unexplained_accounts == ["device-ghost"]
    with connected(broker, enrolment):
        pass


def test_bad_codes_are_refused_before_anything_changes(admin: BrokerAdmin, engine: Engine) -> None:
    for bad, reason in (("a/b", "invalid_device_code"), ("#", "invalid_device_code"),
                        ("emon", "reserved_code")):  # fmt: skip
        with pytest.raises(EnrolmentError) as caught:
            enroll_device(engine, admin, bad, by=BY)
        assert caught.value.reason == reason
    with pytest.raises(EnrolmentError) as caught:
        enroll_device(engine, admin, "ok-1", formats=["zigbee"], by=BY)
    assert caught.value.reason == "unknown_format"
    assert list_enrolments(engine).devices == []
    assert [u for u in admin.list_clients() if u.startswith("device-")] == []


def cli(settings: Settings, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = service_env(settings)  # with POWERFLOW_BROKER_ADMIN_URL
    return subprocess.run(
        [sys.executable, "-m", "powerflow.cli", "devices", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )


def test_enroll_json_credentials_work_and_list_shows_the_state(
    running: dict[str, Service],
    broker: Broker,
    settings: Settings,
    engine: Engine,
    tmp_path: Path,
) -> None:
    a, _, _ = codes()
    done = cli(settings, tmp_path, "enroll", a, "--json")
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.strip().splitlines()  # one JSON object, nothing else on stdout
    given = json.loads(line)
    assert given["username"] == given["client_id"] == f"device-{a}"
    assert given["topic"] == f"power/{a}/measurement"
    assert given["port"] == broker.port and given["formats"] == ["original"]
    assert given["password"] not in done.stderr
    url = account_url(broker.connect_host, given["port"], given["username"], given["password"])
    from powerflow.simulate import connect_publisher

    client = connect_publisher(url, given["client_id"])
    try:
        at = datetime.now(UTC) - timedelta(seconds=10)
        client.publish(given["topic"], reading(a, at), qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()
    stored(engine, a, 1)

    listed = cli(settings, tmp_path, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["code"]: r for r in map(json.loads, listed.stdout.splitlines())}
    assert rows[a]["state"] == "enrolled" and rows[a]["has_account"] is True
    assert rows[a]["admitted_at"] is not None and rows[a]["legacy"] is False

    assert cli(settings, tmp_path, "revoke", a).returncode == 0
    table = cli(settings, tmp_path, "list")
    assert table.returncode == 0 and "revoked" in table.stdout

    refused = cli(settings, tmp_path, "enroll", "power", "--json")
    assert refused.returncode == 2 and refused.stdout == "" and "reserved_code" in refused.stderr


def test_enroll_prints_each_formats_settings_once(
    broker: Broker, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    done = cli(settings, tmp_path, "enroll", "plug-1", "--format", "tasmota", "--format", "esphome")
    assert done.returncode == 0, done.stderr
    password = next(
        line.split()[-1] for line in done.stdout.splitlines() if line.startswith("password:")
    )
    assert "Backlog MqttHost 127.0.0.1" in done.stdout
    assert f"MqttPassword {password}; MqttClient device-plug-1; Topic plug-1" in done.stdout
    assert f'  password: "{password}"' in done.stdout and 'topic_prefix: "plug-1"' in done.stdout
    assert "mqtt_uri" not in done.stdout  # not enrolled as the firmware's format


def test_the_simulator_enrols_and_publishes_as_each_device(
    running: dict[str, Service], settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    args = ["simulate", "--enroll", "--devices", "2", "--count", "3", "--rate", "100"]
    done = subprocess.run(
        [sys.executable, "-m", "powerflow.cli", *args],
        env=service_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for code in ("sim-0001", "sim-0002"):
        stored(engine, code, 3)
    states = {d.code: d.state for d in list_enrolments(engine).devices}
    assert states == {"sim-0001": "enrolled", "sim-0002": "enrolled"}


def test_the_cli_says_when_the_broker_is_away(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    from powerflow.broker import free_port

    away = f"mqtt://powerflow-admin:x@127.0.0.1:{free_port()}"
    env = {**service_env(settings), "POWERFLOW_BROKER_ADMIN_URL": away}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "powerflow.cli", "devices", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            check=False,
        )

    refused = run("enroll", "dev-1")
    assert refused.returncode == 3, refused.stderr
    assert "cannot reach the broker" in refused.stderr and "Traceback" not in refused.stderr
    assert list_enrolments(engine).devices == []  # nothing recorded without the broker
    listed = run("list")
    assert listed.returncode == 0 and "database only" in listed.stderr


def test_enrolled_credentials_work_over_tls_with_the_ca_pinned(
    running: dict[str, Service], broker: Broker, admin: BrokerAdmin, engine: Engine
) -> None:
    from powerflow.simulate import connect_publisher

    a, _, _ = codes()
    enrolment = enroll_device(engine, admin, a, by=BY)
    assert broker.tls_port is not None
    url = account_url(
        "localhost", broker.tls_port, enrolment.username, enrolment.password, tls=True
    )
    client = connect_publisher(url, enrolment.client_id, ca_file=str(broker.certs.ca))
    try:
        at = datetime.now(UTC) - timedelta(seconds=5)
        client.publish(enrolment.topic, reading(a, at), qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()
    stored(engine, a, 1)


def test_a_fleet_enrols_in_a_row(broker: Broker, admin: BrokerAdmin, engine: Engine) -> None:
    # Mosquitto 2.0.11's dynamic security with a memory_limit broke after ~6 account changes
    # ("out of memory", the admin disconnected): the shipped configuration has none.
    tag = uuid.uuid4().hex[:6]
    for i in range(15):
        enroll_device(engine, admin, f"fleet-{tag}-{i}", by=BY)
    listing = list_enrolments(engine, admin)
    assert [d.state for d in listing.devices] == ["enrolled"] * 15
    assert listing.unexplained_accounts == []
