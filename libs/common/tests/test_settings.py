"""Settings and names: environment parsing and namespacing, without any server."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from powerflow_common.names import Names
from powerflow_common.settings import Settings, load_settings, redact_url, with_password


def test_defaults_work_on_one_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("POWERFLOW_") or key == "ANTHROPIC_API_KEY":
            monkeypatch.delenv(key)
    settings = Settings(_env_file=None)
    assert settings.database_url.get_secret_value() == (
        "mysql+pymysql://root@127.0.0.1:3306/powerflow"
    )
    assert settings.mqtt_topics is None  # the enabled formats' topics
    assert settings.formats == ("original", "tasmota", "shelly", "esphome", "emonhub")
    assert settings.nats_url == "nats://127.0.0.1:4222"
    assert settings.emission_region == "KR"
    assert settings.factor_set == "original"
    assert settings.anthropic_api_key is None
    assert (settings.api_host, settings.api_port) == ("127.0.0.1", 8000)


def test_environment_overrides_and_comma_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERFLOW_MQTT_TOPICS", "a/b, c/+/d")
    monkeypatch.setenv("POWERFLOW_NATS_URL", "nats://a:4222,nats://b:4222")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-secret")
    settings = load_settings()
    assert settings.mqtt_topics == ("a/b", "c/+/d")
    assert settings.nats_servers == ["nats://a:4222", "nats://b:4222"]
    assert settings.anthropic_api_key is not None
    assert "sk-test-secret" not in repr(settings)


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValidationError):
        settings.namespace = "x"  # type: ignore[misc]


def test_bad_settings_fail_with_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERFLOW_NAMESPACE", "has.dots")
    with pytest.raises(ValidationError, match="namespace"):
        load_settings()
    monkeypatch.delenv("POWERFLOW_NAMESPACE")
    monkeypatch.setenv("POWERFLOW_MQTT_URL", "http://broker")
    with pytest.raises(ValidationError, match="mqtt"):
        load_settings()


def test_namespace_prefixes_every_name() -> None:
    plain, ns = Names(""), Names("t1")
    assert plain.readings_stream == "READINGS"
    assert plain.readings_subject("0") == "readings.0"
    assert plain.rejected_subject("not_json") == "rejected.not_json"
    assert plain.persisted_subject == "persisted"
    assert ns.readings_stream == "t1_READINGS"
    assert ns.readings_wildcard == "t1.readings.>"
    assert ns.writer_consumer == "t1_writer"
    assert ns.mqtt_client_id("0") == "t1-powerflow-ingest-0"
    assert plain.mqtt_client_id("0") == "powerflow-ingest-0"


def test_passwords_are_redacted_from_urls() -> None:
    assert redact_url("mqtt://user:hunter2@host:1883") == "mqtt://user:***@host:1883"
    assert redact_url("mqtt://host:1883") == "mqtt://host:1883"


def test_broker_admin_url_must_be_mqtt_and_passwords_replace_the_urls() -> None:
    with pytest.raises(ValidationError, match="mqtt://"):
        load_settings(broker_admin_url="http://powerflow-admin:x@broker:1883")
    assert load_settings().broker_admin_url is None
    # A URL without a password gets one; a password with URL-special characters is quoted.
    assert with_password("mqtt://powerflow-admin@broker:1883", SecretStr("a/b@c")) == (
        "mqtt://powerflow-admin:a%2Fb%40c@broker:1883"
    )
    assert with_password("mqtts://u:old@broker", SecretStr("new")) == "mqtts://u:new@broker"
    settings = load_settings(mqtt_url="mqtt://powerflow-ingest-0@broker:1883", mqtt_password="p")
    assert settings.mqtt_login_url == "mqtt://powerflow-ingest-0:p@broker:1883"
