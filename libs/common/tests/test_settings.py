"""Settings and names: environment parsing and namespacing, without any server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from powerflow_common import settings as settings_module
from powerflow_common.engines_file import (
    FILE_MODE,
    engines_path,
    live_engines,
    remove_engines_file,
    write_engines_file,
)
from powerflow_common.errors import ConfigurationError
from powerflow_common.names import Names
from powerflow_common.settings import (
    ENGINES,
    Settings,
    engine_url,
    load_settings,
    redact_url,
    with_password,
)


def _no_powerflow_environment(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    for key in list(os.environ):
        if key.startswith("POWERFLOW_") or key == "ANTHROPIC_API_KEY":
            monkeypatch.delenv(key)
    monkeypatch.setenv("POWERFLOW_DATA_DIR", str(data_dir))


def test_defaults_point_at_no_machine_service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key in list(os.environ):
        if key.startswith("POWERFLOW_") or key == "ANTHROPIC_API_KEY":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no var/engines.json of a running `up` here
    settings = Settings(_env_file=None)
    assert settings.data_dir == Path("var")
    # No engine URL by default: none of the machine's MariaDB, NATS, Redis or Mosquitto.
    for engine in ENGINES:
        assert engine_url(settings, engine) == ""
    assert settings.mqtt_topics is None  # the enabled formats' topics
    assert settings.formats == ("original", "tasmota", "shelly", "esphome", "emonhub")
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


UP_URLS = {
    "database_url": "sqlite:////srv/pf/var/powerflow.db",
    "nats_url": "nats://127.0.0.1:40001",
    "redis_url": "redis://:pw@127.0.0.1:40002/0",
    "mqtt_url": "mqtt://powerflow-ingest-0:pw@127.0.0.1:40003",
}


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(done.stdout)


def test_without_a_url_or_a_running_up_a_worker_is_told_what_to_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_powerflow_environment(monkeypatch, tmp_path)
    with pytest.raises(ConfigurationError) as caught:
        load_settings(require=("database", "nats"))
    message = str(caught.value)
    assert "no database: set POWERFLOW_DATABASE_URL" in message
    assert "no NATS: set POWERFLOW_NATS_URL" in message
    assert f"with data folder {tmp_path.resolve()}" in message
    # What is not required is not checked: `powerflow keys` needs only the database.
    load_settings(require=("database",), database_url="sqlite:///x.db")


def test_a_running_up_hands_its_urls_to_workers_of_the_same_data_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_powerflow_environment(monkeypatch, tmp_path)
    path = write_engines_file(tmp_path, UP_URLS)  # this test's process plays the running up
    assert path == engines_path(tmp_path)
    assert path.stat().st_mode & 0o777 == FILE_MODE
    settings = load_settings(require=("database", "nats", "redis", "mqtt"))
    for engine, setting in ENGINES.items():
        assert engine_url(settings, engine) == UP_URLS[setting.field]
    # A setting of the worker's own wins over up's.
    monkeypatch.setenv("POWERFLOW_NATS_URL", "nats://elsewhere:4222")
    assert load_settings().nats_url == "nats://elsewhere:4222"
    # Another data folder sees none of it.
    monkeypatch.setenv("POWERFLOW_DATA_DIR", str(tmp_path / "other"))
    assert load_settings().database_url.get_secret_value() == ""
    remove_engines_file(tmp_path)
    assert not path.exists()


def test_the_file_of_an_up_that_died_is_ignored_and_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_powerflow_environment(monkeypatch, tmp_path)
    dead = _dead_pid()
    write_engines_file(tmp_path, UP_URLS, pid=dead)
    assert live_engines(tmp_path) is None
    with pytest.raises(ConfigurationError, match=f"from pid {dead}, which is no longer running"):
        load_settings(require=("nats",))
    # Removing is only for its owner: this process does not remove another up's file.
    remove_engines_file(tmp_path)
    assert engines_path(tmp_path).exists()


def test_a_renamed_setting_reads_its_old_name_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _no_powerflow_environment(monkeypatch, tmp_path)
    monkeypatch.setattr(settings_module, "_warned_names", set())
    monkeypatch.setenv("POWERFLOW_API_TIMEZONE", "Europe/London")
    with caplog.at_level("WARNING", logger="powerflow_common.settings"):
        first = Settings(_env_file=None)
        second = Settings(_env_file=None)
    assert first.organisation_timezone == second.organisation_timezone == "Europe/London"
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "setting POWERFLOW_API_TIMEZONE is deprecated and will be removed: "
        "rename it POWERFLOW_ORGANISATION_TIMEZONE"
    ]


def test_the_new_name_wins_silently_when_both_names_agree(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_powerflow_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("POWERFLOW_DEFAULT_TIMEZONE", "UTC")
    monkeypatch.setenv("POWERFLOW_DEVICE_CLOCK_TIMEZONE", "UTC")
    assert Settings(_env_file=None).device_clock_timezone == "UTC"


def test_a_renamed_setting_set_under_both_names_to_different_values_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_powerflow_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("POWERFLOW_DEFAULT_TIMEZONE", "UTC")
    monkeypatch.setenv("POWERFLOW_DEVICE_CLOCK_TIMEZONE", "Asia/Seoul")
    with pytest.raises(ConfigurationError, match="set only POWERFLOW_DEVICE_CLOCK_TIMEZONE"):
        Settings(_env_file=None)


def test_a_renamed_settings_old_name_is_read_from_dotenv_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_powerflow_environment(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("POWERFLOW_API_PAGE_SIZE_MAX=42\n")
    assert Settings().api_readings_page_max == 42


def test_every_deprecated_name_points_at_a_field_and_is_not_itself_a_field() -> None:
    fields = Settings.model_fields
    for old, new in settings_module.DEPRECATED_NAMES.items():
        assert new in fields
        assert old.removeprefix("POWERFLOW_").lower() not in fields
