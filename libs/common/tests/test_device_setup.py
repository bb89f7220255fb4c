"""What `devices enroll` tells a device: one JSON object, or each format's settings."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from powerflow_common.device_setup import (
    DeviceBroker,
    enrolment_json,
    esphome_yaml,
    firmware_config,
    setup_texts,
    shelly_rpc,
    tasmota_command,
)
from powerflow_common.enrolment import Enrolment
from powerflow_common.settings import load_settings

PASSWORD = "Zq3-_w8AbCdEfGhIjKlMnOpQrStUvWxY"
ENROLMENT = Enrolment(
    code="A4:CF:12:9B:00:01",
    username="device-A4:CF:12:9B:00:01",
    client_id="device-A4:CF:12:9B:00:01",
    password=PASSWORD,
    formats=("original", "tasmota", "shelly", "esphome", "emonhub"),
    topic="power/A4:CF:12:9B:00:01/measurement",
    topics=("power/A4:CF:12:9B:00:01/measurement",),
    legacy=False,
    enrolled_at=datetime(2026, 11, 29, tzinfo=UTC),
    created=True,
)
PLAIN = DeviceBroker("broker.example", 1883, None)
TLS = DeviceBroker("broker.example", 1883, 8883)


def test_the_address_devices_reach_comes_from_settings_or_the_mqtt_url() -> None:
    internal = load_settings(mqtt_url="mqtt://ingest:pw@10.0.0.5:1884")
    assert DeviceBroker.from_settings(internal) == DeviceBroker("10.0.0.5", 1884, None)
    public = load_settings(
        mqtt_url="mqtt://10.0.0.5:1884",
        device_mqtt_host="mqtt.example.org",
        device_mqtt_port=1883,
        device_mqtt_tls_port=8883,
    )
    assert DeviceBroker.from_settings(public) == DeviceBroker("mqtt.example.org", 1883, 8883)
    assert TLS.uri == "mqtts://broker.example:8883" and PLAIN.uri == "mqtt://broker.example:1883"


def test_the_json_object_holds_what_a_script_needs() -> None:
    given = json.loads(json.dumps(enrolment_json(ENROLMENT, TLS)))
    assert given["username"] == given["client_id"] == "device-A4:CF:12:9B:00:01"
    assert given["password"] == PASSWORD
    assert (given["host"], given["port"], given["tls_port"]) == ("broker.example", 1883, 8883)
    assert given["topic"] == "power/A4:CF:12:9B:00:01/measurement"


def test_the_firmware_config_uses_tls_when_the_broker_has_it() -> None:
    assert firmware_config(ENROLMENT, TLS)["mqtt_uri"] == "mqtts://broker.example:8883"
    config = firmware_config(ENROLMENT, PLAIN)
    assert config["mqtt_uri"] == "mqtt://broker.example:1883"
    assert config["device_code"] == ENROLMENT.code and config["legacy_topic"] is False
    assert config["mqtt_username"] == config["mqtt_client_id"] == ENROLMENT.username


def test_vendor_settings() -> None:
    assert tasmota_command(ENROLMENT, PLAIN) == (
        "Backlog MqttHost broker.example; MqttPort 1883; MqttUser device-A4:CF:12:9B:00:01; "
        f"MqttPassword {PASSWORD}; MqttClient device-A4:CF:12:9B:00:01; "
        "Topic A4:CF:12:9B:00:01; FullTopic %prefix%/%topic%/; TelePeriod 10"
    )
    rpc = shelly_rpc(ENROLMENT, TLS)
    body = json.loads(rpc.split(" -d '", 1)[1].rstrip("'"))["config"]
    assert body["server"] == "broker.example:8883" and body["ssl_ca"] == "user_ca.pem"
    assert body["topic_prefix"] == ENROLMENT.code and body["pass"] == PASSWORD
    yaml = esphome_yaml(ENROLMENT, PLAIN)
    assert f'  password: "{PASSWORD}"' in yaml and "  discovery: false" in yaml
    titles = [title for title, _ in setup_texts(ENROLMENT, PLAIN)]
    assert len(titles) == 5 and titles[0].startswith("powerflow firmware")


def test_the_password_never_shows_in_a_repr() -> None:
    assert PASSWORD not in repr(ENROLMENT)
