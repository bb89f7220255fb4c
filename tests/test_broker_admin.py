"""BrokerAdmin against the real broker, and the data folder ``powerflow broker`` prepares."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from pf_testing import FleetBroker, wait_for
from powerflow.broker import (
    DYNSEC_FILE,
    ingest_username,
    prepare_accounts,
    render_config,
)
from powerflow_common.broker_admin import (
    ADMIN_USERNAME,
    INGEST_ROLE,
    BrokerAdmin,
    broker_admin,
    hash_password,
    new_password,
)
from powerflow_common.errors import BrokerError
from powerflow_common.settings import Settings, load_settings


def connect(port: int, username: str, password: str) -> tuple[mqtt.Client, dict[str, Any]]:
    """A connected client and what happened to it (``connack``, ``gone``)."""
    state: dict[str, Any] = {"connected": threading.Event(), "gone": threading.Event()}
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=username, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.username_pw_set(username, password)

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        state["connack"] = reason
        state["connected"].set()

    def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        state["reason"] = reason
        state["gone"].set()
        state["connected"].set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert state["connected"].wait(10)
    return client, state


def logs_in(port: int, username: str, password: str) -> bool:
    client, state = connect(port, username, password)
    client.disconnect()
    client.loop_stop()
    return "connack" in state and not state["connack"].is_failure


def test_set_client_is_idempotent_and_none_keeps_the_password(broker: FleetBroker) -> None:
    password = new_password()
    with broker.admin() as admin:
        admin.set_client("dev-1", password, publish=["power/dev-1/measurement"], textname="One")
        admin.set_client("dev-1", password, publish=["power/dev-1/measurement"], textname="One")
        admin.set_client("dev-1", None, publish=["power/dev-1/measurement", "tele/dev-1/#"])
        assert "dev-1" in admin.list_clients()
    assert logs_in(broker.port, "dev-1", password)
    assert not logs_in(broker.port, "dev-1", "other")


def test_a_new_client_needs_a_password(broker: FleetBroker) -> None:
    with broker.admin() as admin, pytest.raises(BrokerError, match="needs a password"):
        admin.set_client("dev-new", None, publish=["power/dev-new/measurement"])


def test_remove_client_disconnects_at_once_and_says_when_absent(broker: FleetBroker) -> None:
    password = new_password()
    with broker.admin() as admin:
        admin.set_client("dev-2", password, publish=["power/dev-2/measurement"])
    client, state = connect(broker.port, "dev-2", password)
    try:
        assert not state["connack"].is_failure
        with broker.admin() as admin:
            assert admin.remove_client("dev-2") is True
            assert admin.remove_client("dev-2") is False
            assert "dev-2" not in admin.list_clients()
        wait_for(lambda: state["gone"].is_set(), 10, what="the revoked client disconnected")
    finally:
        client.loop_stop()
    assert not logs_in(broker.port, "dev-2", password)


def test_powerflows_own_roles_cannot_be_taken_as_account_names(broker: FleetBroker) -> None:
    with broker.admin() as admin:
        with pytest.raises(BrokerError, match="role powerflow owns"):
            admin.set_client(INGEST_ROLE, new_password(), publish=["#"])
        with pytest.raises(BrokerError, match="role powerflow owns"):
            admin.remove_client(INGEST_ROLE)


def test_a_wrong_admin_password_and_a_missing_setting_are_clear_errors(
    broker: FleetBroker,
) -> None:
    url = f"mqtt://{ADMIN_USERNAME}:wrong@127.0.0.1:{broker.port}"
    with pytest.raises(BrokerError, match="refused the admin login"), BrokerAdmin(url):
        pass
    with pytest.raises(BrokerError, match="POWERFLOW_BROKER_ADMIN_URL"):
        broker_admin(load_settings(broker_admin_url=None))
    with pytest.raises(BrokerError, match="no credentials"):
        BrokerAdmin(f"mqtt://127.0.0.1:{broker.port}")


def test_broker_admin_from_settings_with_a_password_of_its_own(
    broker: FleetBroker, settings: Settings
) -> None:
    with broker_admin(settings) as admin:
        assert ADMIN_USERNAME in admin.list_clients()
    separate = load_settings(
        broker_admin_url=f"mqtt://{ADMIN_USERNAME}:placeholder@127.0.0.1:{broker.port}",
        broker_admin_password=broker.password(ADMIN_USERNAME),
    )
    with broker_admin(separate) as admin:
        assert ingest_username("0", broker.namespace) in admin.list_clients()


def test_an_unreachable_broker_is_a_clear_error() -> None:
    from powerflow.broker import free_port

    url = f"mqtt://{ADMIN_USERNAME}:x@127.0.0.1:{free_port()}"
    with pytest.raises(BrokerError, match="cannot reach the broker"), BrokerAdmin(url):
        pass


# --- the data folder --------------------------------------------------------------------------


def test_prepare_accounts_keeps_enrolled_clients_and_follows_the_secret_files(
    tmp_path: Path,
) -> None:
    prepare_accounts(tmp_path, ingest_usernames=["powerflow-ingest-0"])
    config = json.loads((tmp_path / DYNSEC_FILE).read_text())
    config["clients"].append({"username": "dev-9", **hash_password("p"), "roles": []})
    (tmp_path / DYNSEC_FILE).write_text(json.dumps(config))
    secret = tmp_path / "secrets" / "powerflow-ingest-0.password"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    before = {c["username"]: c for c in config["clients"]}["powerflow-ingest-0"]["password"]
    secret.unlink()
    secret.write_text("rotated\n")  # an operator's (or a Kubernetes Secret's) password
    prepare_accounts(tmp_path, ingest_usernames=["powerflow-ingest-0", "powerflow-ingest-1"])
    again = json.loads((tmp_path / DYNSEC_FILE).read_text())
    clients = {c["username"]: c for c in again["clients"]}
    assert set(clients) == {
        ADMIN_USERNAME,
        "powerflow-ingest-0",
        "powerflow-ingest-1",
        "dev-9",
    }
    assert clients["powerflow-ingest-0"]["password"] != before
    salt = __import__("base64").b64decode(clients["powerflow-ingest-0"]["salt"])
    assert (
        hash_password("rotated", salt=salt)["password"] == clients["powerflow-ingest-0"]["password"]
    )
    assert [r["rolename"] for r in clients["powerflow-ingest-1"]["roles"]] == [INGEST_ROLE]
    assert again["defaultACLAccess"]["subscribe"] is False
    assert again["defaultACLAccess"]["publishClientReceive"] is False


def test_render_config_modes(tmp_path: Path) -> None:
    plugin = "/plugin.so"
    closed = render_config(1884, tmp_path, tls_port=8884, plugin=plugin)
    assert "listener 1884 127.0.0.1" in closed and "listener 8884 127.0.0.1" in closed
    assert f"cafile {tmp_path}/certs/ca.crt" in closed
    assert "allow_anonymous false" in closed
    assert closed.count("use_username_as_clientid true") == 2
    plain = "\n".join(
        line
        for line in render_config(1884, tmp_path, plugin=plugin).splitlines()
        if not line.startswith("#")
    )
    assert "8883" not in plain and "cafile" not in plain and "keyfile" not in plain
    assert plain.count("use_username_as_clientid true") == 1
    lab = render_config(1884, tmp_path, plugin=plugin, open_lab=True)
    assert "allow_anonymous true" in lab and "use_username_as_clientid true" not in lab
    assert f"plugin_opt_config_file {tmp_path}/{DYNSEC_FILE}" in closed


def test_admin_sessions_of_one_process_take_turns(broker: FleetBroker) -> None:
    errors: list[BaseException] = []

    def enrol(code: str) -> None:
        try:
            with broker.admin() as admin:
                for _ in range(3):
                    admin.set_client(code, new_password(), publish=[f"power/{code}/measurement"])
        except BaseException as exc:  # collected: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=enrol, args=(f"dev-t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with broker.admin() as admin:
        assert {f"dev-t{i}" for i in range(4)} <= set(admin.list_clients())


def test_broker_certs_makes_a_ca_for_the_names_given_and_refuses_odd_ones(tmp_path: Path) -> None:
    import subprocess

    from typer.testing import CliRunner

    from powerflow.cli import app

    result = CliRunner().invoke(
        app,
        ["broker", "certs", "--data-dir", str(tmp_path), "--hostname", "broker.lan",
         "--hostname", "192.168.1.10"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"pin this CA on devices: {tmp_path / 'certs' / 'ca.crt'}" in result.output
    san = subprocess.run(
        ["openssl", "x509", "-in", str(tmp_path / "certs" / "server.crt"), "-noout", "-ext",
         "subjectAltName"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "DNS:broker.lan" in san and "IP Address:192.168.1.10" in san
    assert stat.S_IMODE((tmp_path / "certs" / "server.key").stat().st_mode) == 0o600
    odd = CliRunner().invoke(
        app, ["broker", "certs", "--data-dir", str(tmp_path / "x"), "--hostname", "a/b\nc"]
    )
    assert odd.exit_code == 2 and "neither a host name nor an IP address" in odd.output


def test_an_unchanged_set_client_keeps_the_device_connected_a_new_password_does_not(
    broker: FleetBroker,
) -> None:
    password = new_password()
    topics = ["power/dev-3/measurement"]
    with broker.admin() as admin:
        admin.set_client("dev-3", password, publish=topics, textname="Three")
    client, state = connect(broker.port, "dev-3", password)
    try:
        with broker.admin() as admin:
            admin.set_client("dev-3", None, publish=topics, textname="Three")
            admin.list_clients()  # answered after the set_client: anything it did is done
        assert not state["gone"].is_set()
        with broker.admin() as admin:
            admin.set_client("dev-3", new_password(), publish=topics)
        wait_for(lambda: state["gone"].is_set(), 10, what="the re-keyed client disconnected")
    finally:
        client.loop_stop()
