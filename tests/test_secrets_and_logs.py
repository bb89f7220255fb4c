"""Secrets from files (``POWERFLOW_<NAME>_FILE``) and no credential in any log line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from pydantic import SecretStr

from powerflow_common.errors import ConfigurationError
from powerflow_common.logs import configure_logging, get_logger, register_secrets
from powerflow_common.settings import Settings, load_settings, with_password


def _secret_file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_every_secret_setting_reads_its_file_without_the_trailing_newline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = [
        name
        for name, field in Settings.model_fields.items()
        if SecretStr in (field.annotation, *getattr(field.annotation, "__args__", ()))
    ]
    assert {"database_url", "redis_url", "redis_password", "nats_password"} <= set(secrets)
    values = {
        "database_url": "mysql+pymysql://pf:db-secret@db:3306/powerflow",
        "mqtt_url": "mqtt://ingest-0:mqtt-secret@broker:1883",
        "broker_admin_url": "mqtt://powerflow-admin:admin-secret@broker:1883",
        "redis_url": "redis://redis:6379/0",
    }
    for name in secrets:
        variable = "ANTHROPIC_API_KEY" if name == "anthropic_api_key" else f"POWERFLOW_{name}"
        monkeypatch.delenv(variable.upper(), raising=False)
        value = values.get(name, f"{name}-secret")
        monkeypatch.setenv(f"{variable.upper()}_FILE", _secret_file(tmp_path, name, value + "\n"))
    settings = load_settings()
    for name in secrets:
        secret = getattr(settings, name)
        assert secret.get_secret_value() == values.get(name, f"{name}-secret"), name


def test_only_one_trailing_newline_is_stripped_and_the_redis_password_joins_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "POWERFLOW_REDIS_PASSWORD_FILE", _secret_file(tmp_path, "pw", "p@ss/word\n\n")
    )
    settings = load_settings(redis_url="redis://redis:6379/0")
    assert settings.redis_password is not None
    assert settings.redis_password.get_secret_value() == "p@ss/word\n"
    assert (
        with_password("redis://redis:6379/0", SecretStr("p@ss")) == "redis://:p%40ss@redis:6379/0"
    )
    assert with_password("nats://svc@nats:4222", SecretStr("x")) == "nats://svc:x@nats:4222"


def test_a_secret_set_twice_or_an_unreadable_file_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERFLOW_NATS_PASSWORD", "inline")
    monkeypatch.setenv("POWERFLOW_NATS_PASSWORD_FILE", _secret_file(tmp_path, "n", "file"))
    with pytest.raises(ConfigurationError, match="both POWERFLOW_NATS_PASSWORD and"):
        load_settings()
    monkeypatch.delenv("POWERFLOW_NATS_PASSWORD")
    monkeypatch.setenv("POWERFLOW_NATS_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match=r"POWERFLOW_NATS_PASSWORD_FILE=.*cannot read"):
        load_settings()


def test_a_file_named_in_dotenv_is_read_and_clashes_are_found_there_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = _secret_file(tmp_path, "redis_pw", "from-a-file\n")
    monkeypatch.delenv("POWERFLOW_REDIS_PASSWORD", raising=False)
    monkeypatch.delenv("POWERFLOW_REDIS_PASSWORD_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"POWERFLOW_REDIS_PASSWORD_FILE={secret}\n")
    settings = load_settings()
    assert settings.redis_password is not None
    assert settings.redis_password.get_secret_value() == "from-a-file"
    monkeypatch.setenv("POWERFLOW_REDIS_PASSWORD", "inline")
    with pytest.raises(ConfigurationError, match="both POWERFLOW_REDIS_PASSWORD and"):
        load_settings()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)
    register_secrets([])


def test_credentials_in_urls_and_secret_values_never_reach_a_log_line(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    configure_logging("debug", "json", secrets=["file-held-secret-value"])
    log = get_logger("pf-test-redaction")
    urls = {
        "mqtt": "mqtt://device-1001:mqtt-pass-1@broker:1883",
        "redis": "redis://:redis-pass-2@redis:6379/0",
        "nats": "nats://ingest:nats-pass-3@nats:4222",
        "db": "mysql+pymysql://powerflow:db-pass-4@mariadb:3306/powerflow",
    }
    log.info("connecting", **urls, nested={"servers": [urls["nats"]]}, note="ok")
    log.warning(f"failed to reach {urls['redis']}")
    log.info("loaded", token="file-held-secret-value")
    try:
        raise ConnectionError(f"cannot connect to {urls['db']}")
    except ConnectionError:
        log.exception("database_unavailable")
    logging.getLogger("pf-test-stdlib").warning("retrying %s", urls["mqtt"])
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert len(lines) == 5
    for secret in ("mqtt-pass-1", "redis-pass-2", "nats-pass-3", "db-pass-4", "file-held-secret"):
        assert secret not in err, secret
    # Who connected where stays readable.
    assert lines[0]["mqtt"] == "mqtt://device-1001:***@broker:1883"
    assert lines[0]["redis"] == "redis://:***@redis:6379/0"
    assert lines[0]["nested"] == {"servers": ["nats://ingest:***@nats:4222"]}
    assert lines[0]["note"] == "ok"
    assert lines[2]["token"] == "***"
    assert "mysql+pymysql://powerflow:***@mariadb" in lines[3]["exception"]
    assert lines[4]["event"] == "retrying mqtt://device-1001:***@broker:1883"
