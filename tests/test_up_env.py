"""``powerflow up`` gives its processes, the API included, the broker's admin: the dashboard
can enrol devices in ``make run``."""

from __future__ import annotations

import os

import pytest

from powerflow.broker import Broker
from powerflow.up import child_env
from powerflow_common.broker_admin import broker_admin
from powerflow_common.device_setup import DeviceBroker
from powerflow_common.settings import Settings, load_settings

TLS_PORT = 8883


def test_the_api_up_starts_can_manage_the_broker_and_tells_devices_its_address(
    broker: Broker, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stale password settings in the caller's environment must not override up's broker.
    environ = {
        **os.environ,
        "POWERFLOW_BROKER_ADMIN_PASSWORD": "stale-password-from-elsewhere",
        "POWERFLOW_BROKER_ADMIN_PASSWORD_FILE": "/nonexistent/admin.password",
        "POWERFLOW_MQTT_PASSWORD": "stale-ingest-password",
    }
    env = child_env(settings, broker, tls_port=TLS_PORT, environ=environ)
    assert env["POWERFLOW_BROKER_ADMIN_URL"] == broker.admin_url
    for name in list(os.environ):
        if name.startswith("POWERFLOW_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # What `powerflow api` loads in that environment (its own database and NATS aside).
    api = load_settings(
        database_url=settings.database_url.get_secret_value(), nats_url=settings.nats_url
    )
    with broker_admin(api) as admin:
        assert "powerflow-admin" in admin.list_clients()
    told = DeviceBroker.from_settings(api)
    assert (told.host, told.port, told.tls_port) == (broker.connect_host, broker.port, TLS_PORT)
