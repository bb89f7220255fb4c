"""The project's broker is closed: who may connect, publish, subscribe and take a session.

Against real Mosquitto processes with the project's configuration (``powerflow broker``'s),
and, where a reading's fate is the question, the real ingest and writer.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlalchemy import Engine

from pf_testing import (
    FleetBroker,
    Service,
    admit,
    device_rows,
    fleet_codes,
    fleet_messages,
    publish_all,
    sentinel_message,
    wait_for,
)
from powerflow.broker import Broker, free_port
from powerflow_common.broker_admin import new_password
from powerflow_common.settings import Settings

MAX_PACKET_BYTES = 64 * 1024


@dataclass
class Probe:
    """A paho MQTT 5 client that records what the broker answered."""

    client: mqtt.Client
    connack: Any = None
    disconnected: threading.Event = field(default_factory=threading.Event)
    disconnect_reason: Any = None
    suback: list[Any] = field(default_factory=list)
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    answered: threading.Event = field(default_factory=threading.Event)
    subscribed: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def probe(
    port: int,
    *,
    username: str | None = None,
    password: str | None = None,
    client_id: str = "",
    clean_start: bool = True,
    tls_ca: Path | None = None,
    host: str = "127.0.0.1",
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
) -> Probe:
    """Connect and wait for the broker's CONNACK (or the connection's end)."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
    )
    p = Probe(client)
    if username is not None:
        client.username_pw_set(username, password)
    if tls_ca is not None:
        client.tls_set(ca_certs=str(tls_ca), cert_reqs=ssl.CERT_REQUIRED)

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        p.connack = reason
        p.answered.set()

    def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        p.disconnect_reason = reason
        p.disconnected.set()
        p.answered.set()

    def on_subscribe(_c: mqtt.Client, _u: Any, _m: int, codes: list[Any], _p: Any) -> None:
        p.suback = list(codes)
        p.subscribed.set()

    def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        p.messages.append((message.topic, bytes(message.payload)))

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    if protocol == MQTTProtocolVersion.MQTTv5:
        client.connect(host, port, keepalive=30, clean_start=clean_start)
    else:
        client.connect(host, port, keepalive=30)
    client.loop_start()
    assert p.answered.wait(10), "no CONNACK from the broker"
    return p


def login(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return unquote(parts.username or ""), unquote(parts.password or "")


def subscribe_codes(p: Probe, topics: list[str]) -> list[Any]:
    p.subscribed.clear()
    p.client.subscribe([(t, 1) for t in topics])
    assert p.subscribed.wait(10), "no SUBACK"
    return p.suback


def code_of(topic: str) -> str:
    return topic.split("/")[1]


def reading(code: str) -> tuple[str, str]:
    """A valid original-format reading on the device's own topic."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    body = {"deviceCode": code, "timestamp": now, "electric": 12.5}
    return f"power/{code}/measurement", json.dumps(body)


# --- connecting -----------------------------------------------------------------------------


def test_an_anonymous_client_is_refused_and_its_publish_stores_nothing(
    running: dict[str, Service], broker: FleetBroker, engine: Engine
) -> None:
    anonymous = probe(broker.port)
    try:
        assert anonymous.connack is not None and anonymous.connack.is_failure
        assert anonymous.connack.getName() == "Not authorized"
        # paho queues it; the broker never accepted the connection, so nothing goes out.
        anonymous.client.publish(*reading("intruder"), qos=1)
    finally:
        anonymous.stop()
    publish_all(broker.fleet_url, [sentinel_message()])
    wait_for(lambda: device_rows(engine, "sentinel") == 1, 20, what="the sentinel stored")
    assert device_rows(engine, "intruder") == 0


def test_a_wrong_password_is_refused(broker: FleetBroker) -> None:
    username, _ = login(broker.ingest_url())
    refused = probe(broker.port, username=username, password="not-the-password")
    try:
        assert refused.connack is not None and refused.connack.is_failure
    finally:
        refused.stop()


def test_nobody_takes_over_ingests_session_or_its_backlog(
    services: dict[str, Service], broker: FleetBroker, engine: Engine, settings: Settings
) -> None:
    ingest_id = settings.names.mqtt_client_id(settings.ingest_instance)
    services["writer"].start()
    services["ingest"].start()
    services["ingest"].wait_logged("mqtt_subscribed")
    services["ingest"].stop()  # clean stop: its persistent session stays with the broker
    backlog = list(fleet_messages(5, 40))  # 200 readings queued for the absent ingest
    admit(engine, *fleet_codes(5))  # on the shared topic: enrolled as legacy
    publish_all(broker.fleet_url, backlog)

    # Someone else's account with ingest's client id and a clean start: the broker makes the
    # client id the username, so this is the fleet account's own session, not ingest's.
    fleet_user, fleet_password = login(broker.fleet_url)
    impostor = probe(
        broker.port,
        username=fleet_user,
        password=fleet_password,
        client_id=ingest_id,
        clean_start=True,
    )
    assert impostor.connack is not None and not impostor.connack.is_failure
    impostor.stop()
    # ingest's username without its password: refused before any session is touched.
    wrong = probe(
        broker.port, username=ingest_id, password="guess", client_id=ingest_id, clean_start=True
    )
    assert wrong.connack is not None and wrong.connack.is_failure
    wrong.stop()

    services["ingest"].start()
    services["ingest"].wait_logged("mqtt_subscribed")
    wait_for(
        lambda: sum(device_rows(engine, str(1000 + d)) for d in range(5)) == 200,
        30,
        what="the whole backlog stored",
    )
    assert '"session_present": true' in services["ingest"].log_text()

    # And while ingest is connected, an impostor does not knock it off.
    impostor = probe(broker.port, username=fleet_user, password=fleet_password, client_id=ingest_id)
    impostor.stop()
    publish_all(broker.fleet_url, [sentinel_message()])
    wait_for(lambda: device_rows(engine, "sentinel") == 1, 20, what="the sentinel stored")
    assert "mqtt_disconnected" not in services["ingest"].log_text()


# --- what an account may do -----------------------------------------------------------------


def test_a_device_may_publish_its_own_topic_and_subscribe_to_nothing(broker: FleetBroker) -> None:
    password = new_password()
    with broker.admin() as admin:
        admin.set_client("dev-a", password, publish=["power/dev-a/measurement"])
    ingest_user, ingest_password = login(broker.ingest_url())
    reader = probe(broker.port, username=ingest_user, password=ingest_password)
    device = probe(broker.port, username="dev-a", password=password)
    try:
        assert [c.is_failure for c in subscribe_codes(reader, ["power/+/measurement"])] == [False]
        codes = subscribe_codes(device, ["#", "power/dev-b/measurement", "power/+/measurement"])
        assert [c.getName() for c in codes] == ["Not authorized"] * 3
        assert subscribe_codes(device, ["$SYS/#"])[0].is_failure
        assert subscribe_codes(device, ["$CONTROL/dynamic-security/v1/response"])[0].is_failure
        device.client.publish(*reading("dev-b"), qos=1).wait_for_publish(10)
        device.client.publish(*reading("dev-a"), qos=1).wait_for_publish(10)
        wait_for(lambda: reader.messages, 10, what="dev-a's reading at ingest's account")
        assert [code_of(t) for t, _ in reader.messages] == ["dev-a"]
    finally:
        device.stop()
        reader.stop()


def test_ingests_account_reads_but_never_publishes(broker: FleetBroker) -> None:
    ingest_user, ingest_password = login(broker.ingest_url())
    ingest = probe(broker.port, username=ingest_user, password=ingest_password)
    reader_password = new_password()
    with broker.admin() as admin:
        admin.set_client("reader", reader_password, subscribe=["#"])
    reader = probe(broker.port, username="reader", password=reader_password)
    try:
        assert not subscribe_codes(reader, ["#"])[0].is_failure
        ingest.client.publish(*reading("forged"), qos=1).wait_for_publish(10)
        publish_all(broker.fleet_url, [reading("real")])
        wait_for(lambda: reader.messages, 10, what="the fleet's reading")
        assert [code_of(t) for t, _ in reader.messages] == ["real"]
    finally:
        ingest.stop()
        reader.stop()


def test_a_packet_over_64_kib_is_refused_without_hurting_others(
    running: dict[str, Service], broker: FleetBroker, engine: Engine
) -> None:
    big_url = broker.fleet_account("pf-test-big")
    user, password = login(big_url)
    # MQTT 3.1.1: an MQTT 5 client learns the limit from the CONNACK and never sends it.
    big = probe(
        broker.port, username=user, password=password, protocol=MQTTProtocolVersion.MQTTv311
    )
    try:
        big.client.publish("power/big/measurement", b"x" * (MAX_PACKET_BYTES + 1), qos=1)
        assert big.disconnected.wait(10), "the broker kept a client that sent > 64 KiB"
    finally:
        big.stop()
    publish_all(broker.fleet_url, [reading("small"), sentinel_message()])
    wait_for(lambda: device_rows(engine, "sentinel") == 1, 20, what="the sentinel stored")
    assert device_rows(engine, "small") == 1 and device_rows(engine, "big") == 0
    assert "mqtt_disconnected" not in running["ingest"].log_text()


# --- TLS and the lab's open mode ------------------------------------------------------------


def test_the_tls_listener_accepts_a_client_that_pins_the_development_ca(
    broker: FleetBroker,
) -> None:
    assert broker.tls_port is not None
    user, password = login(broker.fleet_url)
    pinned = probe(
        broker.tls_port,
        username=user,
        password=password,
        tls_ca=broker.certs.ca,
        host="localhost",
    )
    try:
        assert pinned.connack is not None and not pinned.connack.is_failure
        pinned.client.publish(*reading("tls"), qos=1).wait_for_publish(10)
    finally:
        pinned.stop()
    # Without the CA pinned (the system's CAs), the development certificate is not trusted.
    with pytest.raises(ssl.SSLError):
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        client.connect("localhost", broker.tls_port)
    # An anonymous client over TLS is refused as on the plain listener.
    anonymous = probe(broker.tls_port, tls_ca=broker.certs.ca, host="localhost")
    try:
        assert anonymous.connack is not None and anonymous.connack.is_failure
    finally:
        anonymous.stop()


@pytest.fixture
def open_broker(tmp_path: Path, dev_certs: Path) -> Iterator[Broker]:
    instance = Broker(free_port(), tmp_path / "open", open_lab=True, certs_from=dev_certs)
    instance.start()
    yield instance
    instance.stop()


def test_the_open_lab_mode_accepts_anonymous_publishes_on_device_topics_only(
    open_broker: Broker,
) -> None:
    reader_password = new_password()
    with open_broker.admin() as admin:
        admin.set_client("reader", reader_password, subscribe=["#"])
    reader = probe(open_broker.port, username="reader", password=reader_password)
    anonymous = probe(open_broker.port, client_id="lab-device")
    try:
        assert not subscribe_codes(reader, ["#"])[0].is_failure
        assert anonymous.connack is not None and not anonymous.connack.is_failure
        assert subscribe_codes(anonymous, ["#"])[0].is_failure  # publish only, never read
        anonymous.client.publish("lab/other", b"not a device topic", qos=1).wait_for_publish(10)
        anonymous.client.publish(*reading("lab-1"), qos=1).wait_for_publish(10)
        wait_for(lambda: reader.messages, 10, what="the anonymous reading")
        assert [code_of(t) for t, _ in reader.messages] == ["lab-1"]
    finally:
        anonymous.stop()
        reader.stop()


def test_the_closed_configuration_is_what_ships() -> None:
    from powerflow.broker import BROKER_CONFIG

    lines = [
        line.split(None, 1)
        for line in BROKER_CONFIG.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    settings = {key: value for key, value in lines if key != "listener"}
    assert settings["allow_anonymous"] == "false"
    assert settings["per_listener_settings"] == "false"
    assert int(settings["max_packet_size"]) == MAX_PACKET_BYTES
    assert int(settings["max_queued_bytes"]) > 0
    # Off: Mosquitto 2.0.11 miscounts dynamic security's memory and then refuses everything
    # (test_broker_admin's account churn would fail with it on).
    assert int(settings["memory_limit"]) == 0
    listeners = [value for key, value in lines if key == "listener"]
    assert listeners == ["1883", "8883"]
    assert [value for key, value in lines if key == "use_username_as_clientid"] == ["true"] * 2
