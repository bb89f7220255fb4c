"""The shipped NATS configuration (deploy/nats/nats.conf): one user per service, least privilege.

A nats-server of the test's own runs the shipped file (its passwords from the environment,
as the containers fill them from secret files); ingest, writer and aggregator run as real
processes with their own users and carry readings from MQTT to hourly statistics, the API
serves /readyz and HTTP ingest with its user, and a user trying what its service never does
is refused by the server.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from litestar.testing import TestClient
from nats.errors import TimeoutError as NatsTimeout
from pf_api_data import bearer
from sqlalchemy import Engine

from conftest import service_env
from pf_testing import FleetBroker, Service, count_rows, nats_server_binary, publish_all, wait_for
from powerflow.broker import free_port
from powerflow_api.app import create_app
from powerflow_api.keys import create_key
from powerflow_common.settings import Settings, load_settings

NATS_CONF = Path(__file__).resolve().parents[1] / "deploy" / "nats" / "nats.conf"
USERS = ("ingest", "writer", "aggregator", "alerts", "api", "admin")


@pytest.fixture
def secured_nats(tmp_path: Path) -> Iterator[tuple[str, dict[str, Path]]]:
    """nats-server with the shipped config on free ports; (url, password file per user)."""
    server = nats_server_binary()
    files: dict[str, Path] = {}
    env: dict[str, str] = {}
    for user in USERS:
        files[user] = tmp_path / f"nats_{user}_password"
        files[user].write_text(f"{user}-Secret-{tmp_path.name}\n")  # as `echo` writes it
        env[f"NATS_{user.upper()}_PASSWORD"] = files[user].read_text().removesuffix("\n")
    port = free_port()
    # The shipped file with this test's ports and store (nats-server refuses a flag that
    # repeats a setting of its file); users and permissions untouched.
    config = tmp_path / "nats.conf"
    config.write_text(
        NATS_CONF.read_text()
        .replace("port: 4222", f"port: {port}")
        .replace("http_port: 8222", f"http_port: {free_port()}")
        .replace("store_dir: /data/jetstream", f"store_dir: {tmp_path / 'jetstream'}")
    )
    log = (tmp_path / "nats.log").open("ab")
    process = subprocess.Popen(
        [server, "-c", str(config)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"nats://127.0.0.1:{port}"
    try:
        wait_for(lambda: _connects(url, "admin", env["NATS_ADMIN_PASSWORD"]), 10, what="nats")
        yield url, files
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def _connects(url: str, user: str, password: str) -> bool:
    async def attempt() -> bool:
        try:
            nc = await nats.connect(
                url,
                user=user,
                password=password,
                connect_timeout=1,
                allow_reconnect=False,
                max_reconnect_attempts=0,
            )
        except Exception:
            return False
        await nc.close()
        return True

    return asyncio.run(attempt())


def test_the_config_is_valid_for_nats_server(tmp_path: Path) -> None:
    server = nats_server_binary()
    env = {f"NATS_{u.upper()}_PASSWORD": "x" for u in USERS}
    checked = subprocess.run(
        [server, "-t", "-c", str(NATS_CONF)], env=env, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    missing = subprocess.run(
        [server, "-t", "-c", str(NATS_CONF)], env={}, capture_output=True, text=True
    )
    assert missing.returncode != 0  # a password not provided is an error, never "no password"


def test_each_service_runs_with_its_own_user_and_no_more(
    secured_nats: tuple[str, dict[str, Path]],
    settings: Settings,
    broker: FleetBroker,
    engine: Engine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, files = secured_nats
    # The shipped config names the default (empty) namespace's subjects; this server is ours,
    # and so is the broker: ingest logs in with the un-namespaced ingest account.
    base = load_settings(
        **{
            **dict(settings),
            "nats_url": url,
            "namespace": "",
            "mqtt_url": broker.ingest_url(namespace=""),
        }
    )

    def env(user: str) -> dict[str, str]:
        return service_env(
            base,
            POWERFLOW_NATS_USER=user,
            POWERFLOW_NATS_PASSWORD_FILE=str(files[user]),
            POWERFLOW_AGGREGATOR_BATCH_MAX_MESSAGES="10",
        )

    procs = {
        name: Service(name, env(name), tmp_path)
        for name in ("writer", "aggregator", "ingest", "alerts")
    }
    try:
        for proc in procs.values():
            proc.start()
        procs["ingest"].wait_logged("mqtt_subscribed")
        procs["writer"].wait_logged("writer_starting")
        procs["alerts"].wait_logged("alerts_running")
        start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
        messages = [
            (
                "power/nu-1/measurement",
                json.dumps(
                    {
                        "deviceCode": "nu-1",
                        "timestamp": (start + timedelta(minutes=m)).isoformat(),
                        "electric": 600.0,
                        "totalEnergy": 10.0 * m,
                    }
                ),
            )
            for m in range(0, 70, 1)
        ]
        publish_all(broker.fleet_url, messages)
        wait_for(lambda: count_rows(engine) == 70, 30, what="70 readings stored")
        wait_for(lambda: count_rows(engine, "hourly_stats") >= 1, 30, what="hourly statistics")

        api_settings = load_settings(
            **{
                **dict(base),
                "nats_user": "api",
                "nats_password": files["api"].read_text().removesuffix("\n"),
            }
        )
        operator, _ = create_key(engine, "ops", "operator")
        with TestClient(create_app(api_settings, engine=engine), timeout=10) as client:
            wait_for(lambda: client.get("/readyz").json()["nats"], 20, what="the API's NATS")
            ready = client.get("/readyz").json()
            assert ready["status"] == "ready", ready
            batch = {"readings": [{"device_code": "nu-2", "ts": datetime.now(UTC).isoformat()}]}
            posted = client.post("/api/v1/ingest", json=batch, headers=bearer(operator))
            assert posted.status_code == 202, posted.text
        # The API's NATS errors (a refused subject among them) are logged as nats_error.
        assert "nats_error" not in capsys.readouterr().out
        wait_for(lambda: count_rows(engine) == 71, 30, what="the HTTP reading stored")
        for proc in procs.values():
            assert proc.alive, proc.log_path.read_text()[-2000:]
            assert "permissions violation" not in proc.log_path.read_text().lower()
    finally:
        for proc in procs.values():
            proc.stop()

    password = {u: files[u].read_text().removesuffix("\n") for u in USERS}
    assert asyncio.run(_refused(url, "ingest", password["ingest"], "persisted"))
    assert asyncio.run(_refused(url, "ingest", password["ingest"], "readings.http"))
    assert asyncio.run(_refused(url, "writer", password["writer"], "readings.0"))
    assert asyncio.run(_refused(url, "aggregator", password["aggregator"], "persisted"))
    assert asyncio.run(_delete_refused(url, "api", password["api"]))
    assert not _connects(url, "ingest", "wrong")
    assert not _connects(url, "", "")


async def _refused(url: str, user: str, password: str, subject: str) -> bool:
    """True when the server refuses ``user`` publishing to ``subject`` (JetStream: no ack)."""
    return await _violates(url, user, password, lambda js: js.publish(subject, b"{}"))


async def _delete_refused(url: str, user: str, password: str) -> bool:
    """True when the server refuses ``user`` deleting READINGS (only admin may)."""
    return await _violates(url, user, password, lambda js: js.delete_stream("READINGS"))


async def _violates(url: str, user: str, password: str, act: Any) -> bool:
    """Run ``act(jetstream)``: True when it got no answer and the server said why."""
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(url, user=user, password=password, error_cb=on_error)
    try:
        await act(nc.jetstream(timeout=1))
    except (NatsTimeout, TimeoutError):
        pass  # the server drops a refused request: no answer
    else:
        return False
    finally:
        await nc.close()
    return any("permissions violation" in e.lower() for e in errors)
