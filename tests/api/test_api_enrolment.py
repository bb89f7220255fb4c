"""Enrolment from the API (the dashboard's) against the real closed broker, ingest and writer:
an admin enrols, the returned credentials publish and the reading is stored; revoking closes
the open connection at once; nobody else may; a broker away is a 503, never a 500; the
password is in the answer only, never in the API's log."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from litestar.testing import TestClient
from pf_api_data import bearer
from sqlalchemy import Engine

from pf_testing import DeviceConnection, Service, device_rows, wait_for
from powerflow.broker import Broker, free_port
from powerflow_common.device_setup import DeviceBroker, enrolment_json
from powerflow_common.enrolment import Enrolment
from powerflow_common.logs import configure_logging, register_secrets

Client = TestClient[Any]
CONNECT_TIMEOUT_S = 10.0
STORE_TIMEOUT_S = 30.0


def enroll_json_keys() -> set[str]:
    """The keys of what `powerflow devices enroll --json` prints (the same function)."""
    sample = Enrolment(
        code="c",
        username="device-c",
        client_id="device-c",
        password="p",
        formats=("original",),
        topic="power/c/measurement",
        topics=("power/c/measurement",),
        legacy=False,
        enrolled_at=datetime.now(UTC),
        created=True,
    )
    return set(enrolment_json(sample, DeviceBroker("h", 1883, None)))


@pytest.fixture
def enrolling(make_client: Callable[..., Client], broker: Broker) -> Client:
    """An API that manages this test's broker and tells devices its address."""
    return make_client(
        broker_admin_url=broker.admin_url,
        device_mqtt_host=broker.connect_host,
        device_mqtt_port=broker.port,
    )


@pytest.fixture
def api_log(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """The API's log lines (everything, debug included), as the process would write them."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    configure_logging("debug", "json")
    capsys.readouterr()
    yield lambda: capsys.readouterr().err
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)
    register_secrets([])


def reading(code: str, at: datetime, watts: float = 100.0) -> str:
    stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps({"deviceCode": code, "timestamp": stamp, "electric": watts})


def new_code() -> str:
    return f"ui-{uuid.uuid4().hex[:8]}"


def enrol(client: Client, key: str, code: str, **body: Any) -> Any:
    return client.post(f"/api/v1/devices/{code}/enrolment", json=body, headers=bearer(key))


def device(client: Client, key: str, code: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/devices/{code}", headers=bearer(key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_an_admin_enrols_and_the_credentials_store_readings_and_are_never_logged(
    running: dict[str, Service],
    broker: Broker,
    enrolling: Client,
    keys: dict[str, str],
    engine: Engine,
    api_log: Callable[[], str],
) -> None:
    code = new_code()
    response = enrol(enrolling, keys["admin"], code, formats=["original", "tasmota"])
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    given = response.json()
    assert given.keys() >= enroll_json_keys()
    assert given["username"] == given["client_id"] == f"device-{code}"
    assert given["topic"] == f"power/{code}/measurement" and given["created"] is True
    assert given["host"] == broker.connect_host and given["port"] == broker.port
    assert given["formats"] == ["original", "tasmota"] and given["warnings"] == []
    password = given["password"]
    # What to put on the device, per format, holding the same credentials.
    setup = {s["format"]: s["text"] for s in given["setup"]}
    assert json.loads(setup["original"])["mqtt_password"] == password
    assert f"MqttPassword {password}; MqttClient device-{code}" in setup["tasmota"]

    # The credentials work: the reading is stored through the real ingest and writer.
    at = datetime.now(UTC) - timedelta(seconds=10)
    publisher = DeviceConnection(broker, given["username"], password)
    try:
        assert publisher.accepted, publisher.reason
        publisher.publish(given["topic"], reading(code, at))
    finally:
        publisher.close()
    wait_for(lambda: device_rows(engine, code) >= 1, STORE_TIMEOUT_S, what=f"{code} stored")

    # The device list (paged) shows it enrolled and admitted; a viewer may read that.
    listed = enrolling.get("/api/v1/devices", params={"limit": 10}, headers=bearer(keys["viewer"]))
    assert listed.status_code == 200
    (row,) = [d for d in listed.json() if d["code"] == code]
    assert row["enrolment"] == "enrolled" and row["enrolled_at"] is not None
    assert row["admitted_at"] is not None and row["legacy_topic"] is False

    # Enrolling again rotates the password: a new one, the old refused.
    again = enrol(enrolling, keys["admin"], code)
    assert again.status_code == 201 and again.json()["created"] is False
    assert again.json()["password"] != password
    old = DeviceConnection(broker, given["username"], password)
    old.close()
    assert not old.accepted

    log = api_log()
    assert f"/api/v1/devices/{code}/enrolment" in log  # the access log did log the requests
    assert password not in log and again.json()["password"] not in log


def test_revoking_closes_the_open_connection_and_refuses_the_next(
    broker: Broker, enrolling: Client, keys: dict[str, str]
) -> None:
    code = new_code()
    # No body at all: the defaults (the firmware's format, no legacy topic), as the CLI.
    response = enrolling.post(f"/api/v1/devices/{code}/enrolment", headers=bearer(keys["admin"]))
    assert response.status_code == 201, response.text
    given = response.json()
    assert given["formats"] == ["original"] and given["legacy"] is False
    connected = DeviceConnection(broker, given["username"], given["password"])
    try:
        assert connected.accepted
        response = enrolling.delete(
            f"/api/v1/devices/{code}/enrolment", headers=bearer(keys["admin"])
        )
        assert response.status_code == 200, response.text
        done = response.json()
        assert done["account_removed"] is True and done["revoked_at"] is not None
        assert done["device"]["enrolment"] == "revoked" and done["device"]["legacy_topic"] is False
        assert connected.disconnected.wait(CONNECT_TIMEOUT_S), "the revoked device stayed on"
    finally:
        connected.close()
    refused = DeviceConnection(broker, given["username"], given["password"])
    refused.close()
    assert not refused.accepted
    assert device(enrolling, keys["viewer"], code)["enrolment"] == "revoked"
    # Revoking again is harmless; a device nobody knows is a 404.
    twice = enrolling.delete(f"/api/v1/devices/{code}/enrolment", headers=bearer(keys["admin"]))
    assert twice.status_code == 200 and twice.json()["account_removed"] is False
    unknown = enrolling.delete(
        f"/api/v1/devices/{new_code()}/enrolment", headers=bearer(keys["admin"])
    )
    assert unknown.status_code == 404, unknown.text


def test_a_format_this_deployment_does_not_decode_is_enrolled_with_a_warning(
    make_client: Callable[..., Client], broker: Broker, keys: dict[str, str]
) -> None:
    client = make_client(broker_admin_url=broker.admin_url, formats=("original",))
    response = enrol(client, keys["admin"], new_code(), formats=["esphome"])
    assert response.status_code == 201, response.text
    (warning,) = response.json()["warnings"]
    assert "esphome" in warning and "POWERFLOW_FORMATS" in warning
    (setup,) = response.json()["setup"]
    assert setup["format"] == "esphome" and "topic_prefix" in setup["text"]


def test_only_an_admin_enrols_or_revokes(
    broker: Broker, enrolling: Client, keys: dict[str, str], engine: Engine
) -> None:
    code = new_code()
    for role in ("viewer", "operator", "device"):
        assert enrol(enrolling, keys[role], code).status_code == 403, role
        revoked = enrolling.delete(f"/api/v1/devices/{code}/enrolment", headers=bearer(keys[role]))
        assert revoked.status_code == 403, role
    anonymous = enrolling.post(f"/api/v1/devices/{code}/enrolment", json={})
    assert anonymous.status_code == 401
    listed = enrolling.get("/api/v1/devices", headers=bearer(keys["admin"]))
    assert listed.json() == []
    with broker.admin() as admin:
        assert [u for u in admin.list_clients() if u.startswith("device-")] == []


def test_a_broker_not_configured_or_away_is_a_503_and_changes_nothing(
    make_client: Callable[..., Client], keys: dict[str, str]
) -> None:
    code = new_code()
    unconfigured = make_client()  # no POWERFLOW_BROKER_ADMIN_URL
    response = enrol(unconfigured, keys["admin"], code)
    assert response.status_code == 503, response.text
    assert "POWERFLOW_BROKER_ADMIN_URL" in response.json()["detail"]
    assert "retry-after" not in response.headers  # only configuration fixes it
    assert response.json()["errors"] == [{"key": "reason", "message": "broker_not_configured"}]

    away = make_client(broker_admin_url=f"mqtt://powerflow-admin:pw@127.0.0.1:{free_port()}")
    for answer in (
        enrol(away, keys["admin"], code),
        away.delete(f"/api/v1/devices/{code}/enrolment", headers=bearer(keys["admin"])),
    ):
        assert answer.status_code == 503, answer.text
        assert "cannot reach the broker" in answer.json()["detail"]
        assert answer.headers["retry-after"] == "5"
    # Nothing was recorded without the broker.
    assert away.get("/api/v1/devices", headers=bearer(keys["admin"])).json() == []


def test_bad_requests_are_refused_before_the_broker_is_asked(
    make_client: Callable[..., Client], keys: dict[str, str]
) -> None:
    client = make_client()  # no broker at all: a refusal must come first
    admin = keys["admin"]
    refusals: list[tuple[str, dict[str, Any], str]] = [
        ("a%20b", {}, "invalid_device_code"),
        ("power", {}, "reserved_code"),
        ("ok-1", {"formats": ["zigbee"]}, "unknown_format"),
    ]
    for code, body, reason in refusals:
        response = enrol(client, admin, code, **body)
        assert response.status_code == 422, (code, response.text)
        assert response.json()["errors"] == [{"key": "reason", "message": reason}]
    bad_revoke = client.delete("/api/v1/devices/a%20b/enrolment", headers=bearer(admin))
    assert bad_revoke.status_code == 422
    # Bounded body: no formats, too many, an unknown field, a name too long.
    bodies: list[dict[str, Any]] = [
        {"formats": []},
        {"formats": ["original"] * 9},
        {"format": "original"},
        {"formats": ["x" * 33]},
    ]
    for body in bodies:
        response = enrol(client, admin, "ok-1", **body)
        assert response.status_code == 400, (body, response.text)
    too_long = enrol(client, admin, "x" * 65)
    assert too_long.status_code in (400, 422)


def test_the_dashboard_offers_the_formats_and_refuses_the_codes_the_api_does() -> None:
    """dashboard/src/lib/enrolment.ts copies two lists of powerflow_common: kept equal here."""
    from pathlib import Path

    from powerflow_common.enrolment import RESERVED_CODES
    from powerflow_common.formats.registry import FORMATS

    source = (Path(__file__).parents[2] / "dashboard/src/lib/enrolment.ts").read_text()
    formats = re.search(r"ENROL_FORMATS = \[([^\]]*)\]", source)
    reserved = re.search(r"RESERVED_CODES = new Set\(\[([^\]]*)\]\)", source)
    assert formats is not None and reserved is not None
    assert re.findall(r"'([^']+)'", formats.group(1)) == list(FORMATS)
    assert set(re.findall(r"'([^']+)'", reserved.group(1))) == RESERVED_CODES
