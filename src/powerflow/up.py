"""``powerflow up``: the whole system on one machine, stopped together by Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr
from rich.console import Console

from powerflow.broker import Broker, free_port
from powerflow.simulate import DeviceLogin, enroll_fleet, fleet_codes
from powerflow_common.db.engine import migrate
from powerflow_common.settings import Settings

console = Console(stderr=True)

DEFAULT_TLS_PORT = 8883


def child_env(
    settings: Settings, broker: Broker, *, tls_port: int, environ: Mapping[str, str]
) -> dict[str, str]:
    """The environment of every process ``up`` starts, on this broker.

    The closed broker: ingest logs in with its own account; the API (the dashboard's device
    enrolment), a ``devices`` command in this environment and the fleet's enrolment manage
    devices with the admin's, whose URL carries its password (the URL replaces any
    password setting, which would otherwise take precedence over it).
    """
    # One terminal for people: readable log lines unless JSON was asked for.
    env = {
        "POWERFLOW_LOG_FORMAT": "console",
        **environ,
        "POWERFLOW_MQTT_URL": broker.ingest_url(settings.ingest_instance),
        "POWERFLOW_BROKER_ADMIN_URL": broker.admin_url,
        # What enrolment (the API's, a `devices enroll` in this environment) tells devices.
        "POWERFLOW_DEVICE_MQTT_TLS_PORT": str(tls_port),
    }
    for name in (
        "POWERFLOW_MQTT_PASSWORD",
        "POWERFLOW_MQTT_PASSWORD_FILE",
        "POWERFLOW_BROKER_ADMIN_PASSWORD",
        "POWERFLOW_BROKER_ADMIN_PASSWORD_FILE",
    ):
        env.pop(name, None)
    return env


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
    children: dict[str, subprocess.Popen[str]] = {}
    try:
        return _run_children(settings, broker, children, devices=devices, tls_port=tls_port)
    finally:
        # Whatever failed on the way (enrolment, migration, a child's pipe), nothing the
        # command started outlives it. The simulator first, so ingest and writer can drain
        # what it sent.
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


def _run_children(
    settings: Settings,
    broker: Broker,
    children: dict[str, subprocess.Popen[str]],
    *,
    devices: int,
    tls_port: int,
) -> int:
    """Enrol the fleet, start every process into ``children`` and wait for Ctrl-C."""
    admin_url = broker.admin_url
    env = child_env(settings, broker, tls_port=tls_port, environ=os.environ)
    migrate(settings.database_url.get_secret_value())
    logins: list[DeviceLogin] = []
    if devices:
        # Enrolled like real devices, each with its own account and topic. Enrolling again
        # at every start rotates their passwords: nothing to keep between runs.
        with_admin = settings.model_copy(update={"broker_admin_url": SecretStr(admin_url)})
        logins = enroll_fleet(with_admin, fleet_codes(devices), by="powerflow up")
        console.print(f"enrolled the simulated fleet: {logins[0].code} .. {logins[-1].code}")
    exe = [sys.executable, "-m", "powerflow.cli"]
    commands = {"ingest": [*exe, "ingest"], "writer": [*exe, "writer"], "api": [*exe, "api"]}
    commands["aggregator"] = [*exe, "aggregator"]
    commands["reporter"] = [*exe, "reporter"]
    if devices:
        commands["simulate"] = [*exe, "simulate", "--credentials", "-"]
    # Own process groups: Ctrl-C reaches only us, and we stop the children in order.
    children.update(
        (
            name,
            subprocess.Popen(
                cmd,
                env=env,
                start_new_session=True,
                stdin=subprocess.PIPE if name == "simulate" else None,
                text=True,
            ),
        )
        for name, cmd in commands.items()
    )
    simulator = children.get("simulate")
    if simulator is not None and simulator.stdin is not None:
        # The passwords reach the simulator through a pipe: never a file, argv or environment.
        for login in logins:
            simulator.stdin.write(json.dumps(_login_json(login)) + "\n")
        simulator.stdin.close()
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
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None and name != "simulate":
                console.print(f"[red]{name} exited with {child.returncode}; stopping[/]")
                stopping, code = True, 1
        time.sleep(0.2)
    return code


def _login_json(login: DeviceLogin) -> dict[str, str]:
    """A login as `powerflow devices enroll --json` prints it (what --credentials reads)."""
    return {"code": login.code, "username": login.username, "password": login.password}


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
