"""The one start / ready / stop shape of every server ``powerflow`` runs (engines, brokers).

Real child processes (this interpreter running a few lines), no mocks: what a server does
that the base must handle (exit at start, never answer, ignore SIGTERM).
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from powerflow import child_process
from powerflow.child_process import ChildProcess

# A server that says it is up (after its SIGTERM handler is in place) and then waits.
IGNORES_SIGTERM = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('up', flush=True)\n"
    "time.sleep(600)\n"
)
SERVES = "import time\nprint('up', flush=True)\ntime.sleep(600)\n"
EXITS = "import sys\nprint('cannot bind', flush=True)\nsys.exit(3)\n"
READY_TIMEOUT_S = 30.0


class _SetupFailed(RuntimeError):
    pass


class _Server(ChildProcess):
    label = "the test server"
    setup_error = _SetupFailed

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @property
    def log_path(self) -> Path:
        return self.folder / "server.log"

    def run(self, code: str) -> None:
        self._spawn([sys.executable, "-c", code])

    def said_up(self) -> bool:
        return self.log_path.exists() and "up" in self.log_path.read_text()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_Server]:
    made = _Server(tmp_path)
    yield made
    made.stop(kill=True)


def test_a_server_that_exits_at_start_fails_with_its_code_and_log(server: _Server) -> None:
    server.run(EXITS)
    with pytest.raises(_SetupFailed) as failed:
        server._await_ready(lambda: False, READY_TIMEOUT_S)
    assert "the test server exited at start with 3" in str(failed.value)
    assert str(server.log_path) in str(failed.value)
    assert "cannot bind" in server.log_path.read_text()


def test_a_server_never_ready_is_stopped_at_the_deadline(server: _Server) -> None:
    server.run(SERVES)
    started = time.monotonic()
    with pytest.raises(_SetupFailed, match="was not ready within"):
        server._await_ready(lambda: False, 0.5)
    assert time.monotonic() - started < child_process.STOP_TIMEOUT_S
    # Nothing we started outlives a failed start.
    assert server.process is not None and server.process.poll() is not None
    assert not server.running


def test_stop_terminates_a_server(server: _Server) -> None:
    server.run(SERVES)
    server._await_ready(server.said_up, READY_TIMEOUT_S)
    server.stop()
    assert server.process is not None and server.process.returncode == -signal.SIGTERM


def test_stop_kills_a_server_that_ignores_sigterm_past_the_deadline(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(child_process, "STOP_TIMEOUT_S", 0.5)
    server.run(IGNORES_SIGTERM)
    server._await_ready(server.said_up, READY_TIMEOUT_S)
    server.stop()
    assert server.process is not None and server.process.returncode == -signal.SIGKILL


def test_stop_with_kill_kills_at_once_and_wait_returns_the_exit_code(server: _Server) -> None:
    assert server.wait() == 0 and server.pid is None  # nothing started: nothing to wait for
    server.stop()  # nor to stop
    server.run(SERVES)
    server._await_ready(server.said_up, READY_TIMEOUT_S)
    assert server.running and server.pid is not None
    server.stop(kill=True)
    assert server.wait() == -signal.SIGKILL
