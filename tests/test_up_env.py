"""``powerflow up`` on a fresh machine: embedded engines, the data folder, workers that join.

The end-to-end test runs ``powerflow up`` as a person would (no ``POWERFLOW_*`` engine
setting, a data folder of its own), watches every socket of its process tree, stops it with
Ctrl-C and starts it again on the same folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from pf_testing import wait_for
from powerflow.broker import Broker, free_port
from powerflow.engines import EmbeddedNats, EmbeddedRedis, rss_bytes
from powerflow.up import EXIT_ALREADY_RUNNING, Engines, child_env
from powerflow_common.broker_admin import broker_admin
from powerflow_common.device_setup import DeviceBroker
from powerflow_common.engines_file import ENGINES_FILE, live_engines, write_engines_file
from powerflow_common.settings import Settings, load_settings

TLS_PORT = 8883
# The machine's own services, which `make run` must never touch: MariaDB, NATS, Mosquitto, Redis.
MACHINE_SERVICE_PORTS = frozenset({3306, 4222, 1883, 6379})
SIMULATED_DEVICES = 3
# Generous on two shared cores: up's children are Python processes importing a lot at once.
UP_READY_TIMEOUT_S = 120.0
# Ctrl-C must stop everything "within seconds".
UP_STOP_TIMEOUT_S = 30.0
KEY_PREFIX = "Admin key"


def test_the_api_up_starts_can_manage_the_broker_and_tells_devices_its_address(
    broker: Broker, settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Stale password settings in the caller's environment must not override up's broker.
    environ = {
        **os.environ,
        "POWERFLOW_BROKER_ADMIN_PASSWORD": "stale-password-from-elsewhere",
        "POWERFLOW_BROKER_ADMIN_PASSWORD_FILE": "/nonexistent/admin.password",
        "POWERFLOW_MQTT_PASSWORD": "stale-ingest-password",
    }
    engines = Engines(
        values={
            "mqtt_url": broker.ingest_url(settings.ingest_instance),
            "broker_admin_url": broker.admin_url,
            "device_mqtt_tls_port": str(TLS_PORT),
        },
        broker=broker,
        tls_port=TLS_PORT,
    )
    env = child_env(engines, tmp_path, environ=environ)
    assert env["POWERFLOW_BROKER_ADMIN_URL"] == broker.admin_url
    assert env["POWERFLOW_DATA_DIR"] == str(tmp_path)
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


def _fresh_env(data_dir: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a person who set nothing: no POWERFLOW_* engine URL at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWERFLOW_")}
    if data_dir is not None:
        env["POWERFLOW_DATA_DIR"] = str(data_dir)
    env.update(extra)
    return env


def test_a_worker_with_no_url_and_no_up_says_what_to_set_and_exits_non_zero(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "powerflow.cli", "writer"],
        env=_fresh_env(tmp_path / "var"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    said = " ".join(done.stderr.split())  # rich wraps long lines
    assert "no database: set POWERFLOW_DATABASE_URL or start `powerflow up`" in said
    assert "no NATS: set POWERFLOW_NATS_URL" in said
    assert str(tmp_path / "var") in said


def test_a_second_up_on_the_folder_of_a_running_one_refuses_to_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    write_engines_file(data_dir, {"nats_url": "nats://127.0.0.1:1"})  # this test plays up
    done = subprocess.run(
        [sys.executable, "-m", "powerflow.cli", "up", "--data-dir", str(data_dir)],
        env=_fresh_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == EXIT_ALREADY_RUNNING, done.stderr
    assert f"pid {os.getpid()}" in " ".join(done.stderr.split())
    assert not (data_dir / "nats").exists()  # it started nothing


def test_the_embedded_engines_keep_their_data_across_a_restart(tmp_path: Path) -> None:
    """Redis (append-only) keeps a queued report; JetStream keeps its streams."""
    import redis

    engine = EmbeddedRedis(tmp_path)
    engine.start()
    try:
        client = redis.Redis.from_url(engine.url)
        client.lpush("dramatiq:default", "a report request")
        assert client.getdel("missing") is None  # GETDEL (Redis 6.2): the live tickets
        client.close()
        assert rss_bytes(engine.pid or 0) > 0
    finally:
        engine.stop()
    again = EmbeddedRedis(tmp_path)
    assert again.password == engine.password  # kept in <data_dir>/secrets, mode 0600
    assert (tmp_path / "secrets" / "redis.password").stat().st_mode & 0o777 == 0o600
    again.start()
    try:
        client = redis.Redis.from_url(again.url)
        assert client.lrange("dramatiq:default", 0, -1) == [b"a report request"]
        client.close()
    finally:
        again.stop()
    nats = EmbeddedNats(tmp_path)
    nats.start()
    try:
        assert nats.url.startswith("nats://powerflow:")
    finally:
        nats.stop()
    assert (tmp_path / "nats" / "store" / "jetstream").is_dir()


class Up:
    """``powerflow up`` as a process of the test, its output in a file."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.log = workdir / f"up-{time.monotonic_ns()}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Up:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "powerflow.cli", "up", "--devices", str(SIMULATED_DEVICES)],
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def key(self) -> str:
        """The admin key from up's screen, once it printed it."""

        def printed() -> str | None:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"up exited: {self.output()[-4000:]}")
            for line in self.output().splitlines():
                if line.strip().startswith(KEY_PREFIX):
                    return line.split()[2]
            return None

        key: str = wait_for(printed, UP_READY_TIMEOUT_S, interval_s=0.2, what="up's screen")
        return key

    def tree(self) -> list[psutil.Process]:
        """up and every process it started (engines and workers)."""
        assert self.process is not None
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def machine_service_connections(self) -> list[str]:
        """Connections of the tree to the machine's own MariaDB, NATS, Mosquitto or Redis."""
        found = []
        for proc in self.tree():
            try:
                conns = proc.net_connections(kind="inet")
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            for conn in conns:
                if conn.raddr and conn.raddr.port in MACHINE_SERVICE_PORTS:
                    found.append(f"{proc.name()} -> {conn.raddr.ip}:{conn.raddr.port}")
        return found

    def interrupt(self) -> float:
        """Ctrl-C; the seconds until it exited."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGINT)
        self.process.wait(UP_STOP_TIMEOUT_S)
        return time.monotonic() - started

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            for proc in reversed(self.tree()):
                proc.kill()
            self.process.wait(10)


def _get(port: int, path: str, key: str) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1{path}", headers={"Authorization": f"Bearer {key}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


@pytest.fixture
def fresh_machine(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A working directory and an environment with no engine URL; its own API port."""
    api_port = free_port()
    env = _fresh_env(
        # Not engines: the API's port and the workers' metrics ports, so that the test does
        # not collide with another run on this machine.
        POWERFLOW_API_PORT=str(api_port),
        POWERFLOW_INGEST_METRICS_PORT="0",
        POWERFLOW_WRITER_METRICS_PORT="0",
        POWERFLOW_AGGREGATOR_METRICS_PORT="0",
    )
    yield tmp_path, env


@pytest.mark.slow
def test_up_on_a_fresh_machine_touches_no_machine_service_stops_on_ctrl_c_and_keeps_data(
    fresh_machine: tuple[Path, dict[str, str]],
) -> None:
    workdir, env = fresh_machine
    port = int(env["POWERFLOW_API_PORT"])
    data_dir = workdir / "var"
    up = Up(workdir, env).start()
    seen: list[str] = []
    joined: subprocess.Popen[bytes] | None = None
    try:
        key = up.key()
        # The simulated fleet's readings arrive, stored (through ingest, NATS and the writer).
        code = "sim-0001"

        def stored() -> list[dict[str, Any]]:
            seen.extend(up.machine_service_connections())
            items: list[dict[str, Any]] = _get(port, f"/devices/{code}/readings", key)["items"]
            return items

        first_run = wait_for(stored, UP_READY_TIMEOUT_S, interval_s=0.5, what="stored readings")
        devices = _get(port, "/devices", key)
        assert {f"sim-{i:04d}" for i in range(1, SIMULATED_DEVICES + 1)} <= {
            d["code"] for d in devices
        }
        found = live_engines(data_dir)
        assert found is not None and found.pid == up.process.pid  # type: ignore[union-attr]
        assert (data_dir / ENGINES_FILE).stat().st_mode & 0o777 == 0o600
        assert found.settings["database_url"] == f"sqlite:///{data_dir.resolve()}/powerflow.db"
        # A worker started by hand with the same data folder joins up's engines.
        log = (workdir / "joined-writer.log").open("wb")
        joined = subprocess.Popen(
            [sys.executable, "-m", "powerflow.cli", "writer"],
            env=_fresh_env(data_dir, POWERFLOW_WRITER_METRICS_PORT="0"),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        writer = joined
        wait_for(
            lambda: (
                "writer_starting" in (workdir / "joined-writer.log").read_text()
                or writer.poll() is not None
            ),
            60,
            what="the joined writer",
        )
        assert writer.poll() is None, (workdir / "joined-writer.log").read_text()
        joined.terminate()
        joined.wait(20)
        seen.extend(up.machine_service_connections())
        assert seen == [], f"up connected to the machine's own services: {seen}"
        assert up.interrupt() < UP_STOP_TIMEOUT_S
        assert up.process.returncode == 0, up.output()[-3000:]  # type: ignore[union-attr]
        assert not (data_dir / ENGINES_FILE).exists()
        assert all(not p.is_running() for p in up.tree())

        # Started again on the same folder: the devices (not duplicated) and readings are there.
        again = Up(workdir, env).start()
        try:
            key = again.key()
            kept = _get(port, f"/devices/{code}/readings", key)["items"]
            assert {r["ts"] for r in first_run} <= {r["ts"] for r in kept}
            after = _get(port, "/devices", key)
            assert sorted(d["code"] for d in after) == sorted(d["code"] for d in devices)
            assert again.interrupt() < UP_STOP_TIMEOUT_S
        finally:
            again.kill()
    finally:
        if joined is not None and joined.poll() is None:
            joined.kill()
        up.kill()
