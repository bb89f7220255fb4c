"""``powerflow up``: the whole system on one machine, stopped together by Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from powerflow.broker import Broker, account_url, free_port
from powerflow_common.db.engine import migrate
from powerflow_common.formats.original import ORIGINAL
from powerflow_common.settings import Settings

console = Console(stderr=True)

DEFAULT_TLS_PORT = 8883
SIMULATOR_ACCOUNT = "powerflow-simulator"


def run_all(settings: Settings, *, devices: int, mqtt_port: int, data_dir: Path) -> int:
    """Start broker, ingest, writer, aggregator and the simulated fleet; returns an exit code."""
    port = free_port(mqtt_port)
    if port != mqtt_port:
        console.print(f"[yellow]port {mqtt_port} is taken; the project's broker uses {port}[/]")
    tls_port = free_port(DEFAULT_TLS_PORT)
    broker = Broker(
        port,
        data_dir.resolve(),
        tls_port=tls_port,
        ingest_instances=(settings.ingest_instance,),
        namespace=settings.namespace,
    )
    broker.start()
    # One terminal for people: readable log lines unless JSON was asked for. ingest logs in
    # with its own account; the API and the CLI manage devices with the admin's.
    env = {
        "POWERFLOW_LOG_FORMAT": "console",
        **os.environ,
        "POWERFLOW_MQTT_URL": broker.ingest_url(settings.ingest_instance),
        "POWERFLOW_BROKER_ADMIN_URL": broker.admin_url,
    }
    env.pop("POWERFLOW_MQTT_PASSWORD", None)
    env.pop("POWERFLOW_BROKER_ADMIN_PASSWORD", None)
    migrate(settings.database_url.get_secret_value())
    exe = [sys.executable, "-m", "powerflow.cli"]
    commands = {"ingest": [*exe, "ingest"], "writer": [*exe, "writer"], "api": [*exe, "api"]}
    commands["aggregator"] = [*exe, "aggregator"]
    commands["reporter"] = [*exe, "reporter"]
    simulator_url = ""
    if devices:
        commands["simulate"] = [*exe, "simulate", "--devices", str(devices)]
        # Until the simulated fleet is enrolled device by device: one account that may
        # publish on the original format's topics, and nothing else.
        with broker.admin() as admin:
            password = broker.password(SIMULATOR_ACCOUNT)
            admin.set_client(SIMULATOR_ACCOUNT, password, publish=ORIGINAL.topic_patterns)
        simulator_url = account_url(broker.connect_host, port, SIMULATOR_ACCOUNT, password)
    # Own process groups: Ctrl-C reaches only us, and we stop the children in order.
    children = {
        name: subprocess.Popen(
            cmd,
            env={**env, "POWERFLOW_MQTT_URL": simulator_url} if name == "simulate" else env,
            start_new_session=True,
        )
        for name, cmd in commands.items()
    }
    console.print(
        f"[green]powerflow is up[/]: broker {broker.url} and mqtts://{broker.connect_host}:"
        f"{tls_port} (project configuration; accounts in {broker.secrets_dir}), "
        f"NATS {settings.nats_url}, {len(children)} processes; Ctrl-C stops everything"
    )
    _print_api_access(settings)
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
        for name in ("simulate", "api", "ingest", "writer", "aggregator", "reporter"):
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


DEV_KEY_NAME = "powerflow-up (development)"


def _print_api_access(settings: Settings) -> None:
    """Print the API's URL and a fresh development admin key (the previous one is revoked)."""
    from powerflow_api.keys import create_key, revoke_key
    from powerflow_common.db.engine import make_engine

    engine = make_engine(settings.database_url.get_secret_value())
    try:
        # A new key each start, shown once: the old one stops working, so none lingers.
        revoke_key(engine, DEV_KEY_NAME)
        key, _ = create_key(engine, DEV_KEY_NAME, "admin")
    finally:
        engine.dispose()
    console.print(
        f"[green]API and dashboard[/]: http://{settings.api_host}:{settings.api_port}/ "
        f"(OpenAPI at /schema)\n[green]development admin key[/] (new each start): {key}"
    )
