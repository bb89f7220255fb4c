"""What to put on an enrolled device: one JSON object, or settings text per kind of device.

Pure functions of an ``Enrolment`` and the broker address devices are told; the CLI prints
them, and anything else that enrols (the dashboard) can show the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from powerflow_common.enrolment import Enrolment
from powerflow_common.settings import Settings

DEFAULT_MQTT_PORT = 1883
# Where the powerflow firmware looks for the CA that signed the broker's certificate.
FIRMWARE_CA_FILE = "/ca.pem"
FIRMWARE_SAMPLE_PERIOD_MS = 5000  # the prototype's 5-second readings
TASMOTA_TELE_PERIOD_S = 10  # Tasmota's default is 300 s: too coarse for energy per hour


@dataclass(frozen=True, slots=True)
class DeviceBroker:
    """The broker as devices reach it."""

    host: str
    port: int
    tls_port: int | None

    @classmethod
    def from_settings(cls, settings: Settings) -> DeviceBroker:
        """``device_mqtt_*`` settings, else the host and port of ``mqtt_url``."""
        url = urlsplit(settings.mqtt_url.get_secret_value())
        return cls(
            host=settings.device_mqtt_host or url.hostname or "127.0.0.1",
            port=settings.device_mqtt_port or url.port or DEFAULT_MQTT_PORT,
            tls_port=settings.device_mqtt_tls_port,
        )

    @property
    def uri(self) -> str:
        """mqtts:// when the broker has a TLS listener, else mqtt://."""
        if self.tls_port is not None:
            return f"mqtts://{self.host}:{self.tls_port}"
        return f"mqtt://{self.host}:{self.port}"


def enrolment_json(enrolment: Enrolment, broker: DeviceBroker) -> dict[str, Any]:
    """The one JSON object ``enroll --json`` prints (it holds the password)."""
    return {
        "code": enrolment.code,
        "username": enrolment.username,
        "password": enrolment.password,
        "client_id": enrolment.client_id,
        "topic": enrolment.topic,
        "topics": list(enrolment.topics),
        "formats": list(enrolment.formats),
        "legacy": enrolment.legacy,
        "host": broker.host,
        "port": broker.port,
        "tls_port": broker.tls_port,
        "mqtt_uri": broker.uri,
        "created": enrolment.created,
    }


def firmware_config(enrolment: Enrolment, broker: DeviceBroker) -> dict[str, Any]:
    """The powerflow firmware's ``/config.json`` (Wi-Fi left for the person to fill in)."""
    return {
        "wifi_ssid": "",
        "wifi_password": "",
        "mqtt_uri": broker.uri,
        "mqtt_username": enrolment.username,
        "mqtt_password": enrolment.password,
        "mqtt_client_id": enrolment.client_id,
        "mqtt_ca_file": FIRMWARE_CA_FILE,
        "legacy_topic": False,  # the per-device topic: the broker proves who sent it
        "device_code": enrolment.code,
        "sample_period_ms": FIRMWARE_SAMPLE_PERIOD_MS,
    }


def tasmota_command(enrolment: Enrolment, broker: DeviceBroker) -> str:
    """One Tasmota console command (Backlog) setting broker, account and topic."""
    return (
        f"Backlog MqttHost {broker.host}; MqttPort {broker.port}; "
        f"MqttUser {enrolment.username}; MqttPassword {enrolment.password}; "
        f"MqttClient {enrolment.client_id}; Topic {enrolment.code}; "
        f"FullTopic %prefix%/%topic%/; TelePeriod {TASMOTA_TELE_PERIOD_S}"
    )


def shelly_rpc(enrolment: Enrolment, broker: DeviceBroker) -> str:
    """Shelly Gen2/Gen3 ``MQTT.SetConfig`` (the same fields as its web page), then a reboot."""
    config: dict[str, Any] = {
        "enable": True,
        "server": f"{broker.host}:{broker.tls_port or broker.port}",
        "client_id": enrolment.client_id,
        "user": enrolment.username,
        "pass": enrolment.password,
        "topic_prefix": enrolment.code,
        "status_ntf": True,
        "rpc_ntf": True,
    }
    if broker.tls_port is not None:
        config["ssl_ca"] = "user_ca.pem"
    body = json.dumps({"config": config}, separators=(",", ":"))
    return f"curl -X POST http://SHELLY-IP/rpc/MQTT.SetConfig -d '{body}'"


def esphome_yaml(enrolment: Enrolment, broker: DeviceBroker) -> str:
    """ESPHome's ``mqtt:`` block: prefix = code, no discovery, no log topic."""
    return "\n".join(
        [
            "mqtt:",
            f"  broker: {broker.host}",
            f"  port: {broker.port}",
            f"  username: {json.dumps(enrolment.username)}",
            f"  password: {json.dumps(enrolment.password)}",
            f"  client_id: {json.dumps(enrolment.client_id)}",
            f"  topic_prefix: {json.dumps(enrolment.code)}",
            "  discovery: false",
            "  log_topic: null",
        ]
    )


def emonhub_conf(enrolment: Enrolment, broker: DeviceBroker) -> str:
    """emonhub's MQTT interfacer (name the node ``<code>`` in its [nodes] section)."""
    return "\n".join(
        [
            "[[MQTT]]",
            "    Type = EmonHubMqttInterfacer",
            "    [[[init_settings]]]",
            f"        mqtt_host = {broker.host}",
            f"        mqtt_port = {broker.port}",
            f"        mqtt_user = {enrolment.username}",
            f"        mqtt_passwd = {enrolment.password}",
            "    [[[runtimesettings]]]",
            "        node_format_enable = 1",
            "        node_format_basetopic = emon/",
            "        nodevar_format_enable = 1",
            "        nodevar_format_basetopic = emon/",
        ]
    )


def setup_text(name: str, enrolment: Enrolment, broker: DeviceBroker) -> tuple[str, str] | None:
    """(title, text) of what to put on a device publishing format ``name``; None if unknown."""
    if name == "original":
        config = json.dumps(firmware_config(enrolment, broker), indent=2)
        return ("powerflow firmware: /config.json on the device's LittleFS", config)
    if name == "tasmota":
        return ("Tasmota: paste in the console", tasmota_command(enrolment, broker))
    if name == "shelly":
        return ("Shelly Gen2/Gen3: MQTT settings (RPC)", shelly_rpc(enrolment, broker))
    if name == "esphome":
        return ("ESPHome: the device's YAML", esphome_yaml(enrolment, broker))
    if name == "emonhub":
        return ("emonhub: emonhub.conf [interfacers]", emonhub_conf(enrolment, broker))
    return None


def setup_texts(enrolment: Enrolment, broker: DeviceBroker) -> list[tuple[str, str]]:
    """(title, text) for each format the device was enrolled with."""
    texts = (setup_text(name, enrolment, broker) for name in enrolment.formats)
    return [text for text in texts if text is not None]
