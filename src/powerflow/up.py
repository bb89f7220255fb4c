"""``powerflow up``: the whole system on one machine, stopped together by Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from powerflow.broker import Broker, free_port
from powerflow_common.db.engine import migrate
from powerflow_common.settings import Settings

console = Console(stderr=True)


def run_all(settings: Settings, *, devices: int, mqtt_port: int, data_dir: Path) -> int:
    """Start broker, ingest, writer and the simulated fleet; returns an exit code."""
    port = free_port(mqtt_port)
    if port != mqtt_port:
        console.print(f"[yellow]port {mqtt_port} is taken; the project's broker uses {port}[/]")
    broker = Broker(port, data_dir.resolve())
    broker.start()
    env = {**os.environ, "POWERFLOW_MQTT_URL": broker.url}
    migrate(settings.database_url.get_secret_value())
    exe = [sys.executable, "-m", "powerflow.cli"]
    commands = {"ingest": [*exe, "ingest"], "writer": [*exe, "writer"]}
    if devices:
        commands["simulate"] = [*exe, "simulate", "--devices", str(devices)]
    children = {name: subprocess.Popen(cmd, env=env) for name, cmd in commands.items()}
    console.print(
        f"[green]powerflow is up[/]: broker {broker.url} (project configuration), "
        f"NATS {settings.nats_url}, {len(children)} processes; Ctrl-C stops everything"
    )
    stopping = False

    def request_stop(*_args: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    code = 0
    try:
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None and name != "simulate":
                    console.print(f"[red]{name} exited with {child.returncode}; stopping[/]")
                    stopping, code = True, 1
            time.sleep(0.2)
    finally:
        # The simulator first, so ingest and writer can drain what it sent.
        for name in ("simulate", "ingest", "writer"):
            process = children.get(name)
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
        broker.stop()
        console.print("powerflow stopped")
    return code
