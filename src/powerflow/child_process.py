"""A server process powerflow starts and owns: started, awaited with a deadline, stopped.

The one shape of every server the ``powerflow`` command runs as a child: the embedded engines
(``engines.EmbeddedNats``, ``engines.EmbeddedRedis``) and the MQTT brokers (Mosquitto's
``broker.Broker``, nats-server's ``mqtt_embedded.EmbeddedBroker``). Each differs only in what
it runs, what "ready" means and which error says it failed.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path

# How long a clean stop may take (Redis fsyncs its append-only file, NATS flushes JetStream,
# Mosquitto saves its store) before the process is killed; then how long the kill may take.
STOP_TIMEOUT_S = 10.0
# How often readiness is polled while starting: a fresh server is up in tens of milliseconds.
POLL_INTERVAL_S = 0.05


def listening(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket() as probe:
        return probe.connect_ex((host, port)) == 0


class ChildProcess(ABC):
    """A server process of ours: its own session, its output appended to a log file.

    Its own session (process group): a Ctrl-C meant for ``powerflow`` does not stop the server
    before its clients. A subclass names itself (``label``), says where its log goes
    (``log_path``) and which error a failed start raises (``setup_error``).
    """

    label = "server"
    setup_error: type[RuntimeError] = RuntimeError
    process: subprocess.Popen[bytes] | None = None

    @property
    @abstractmethod
    def log_path(self) -> Path:
        """Where its output goes (appended: a restart keeps the earlier runs' lines)."""

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _spawn(self, command: Sequence[str]) -> subprocess.Popen[bytes]:
        """Start ``command``, stdout and stderr appended to the log file (its folder exists)."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                list(command),
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self.process

    def _await_ready(self, ready: Callable[[], bool], timeout_s: float) -> None:
        """Poll ``ready()`` until true; fail at once if the process exits, or at the deadline
        (stopping it: nothing we started outlives a failed start)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise self.setup_error(
                    f"{self.label} exited at start with {self.process.returncode}; "
                    f"see {self.log_path}"
                )
            if ready():
                return
            time.sleep(POLL_INTERVAL_S)
        self.stop()
        raise self.setup_error(
            f"{self.label} was not ready within {timeout_s:.0f} s; see {self.log_path}"
        )

    def wait(self) -> int:
        """Wait for the server to exit (a foreground ``powerflow broker``); its exit code."""
        if self.process is None:
            return 0
        return self.process.wait()

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (it saves its store), SIGKILL past the deadline; ``kill``: SIGKILL at once."""
        if self.process is None or self.process.poll() is not None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)
