"""``powerflow up``: the whole system on one machine, stopped together by Ctrl-C.

Every engine whose URL is not set is embedded (engines.py): SQLite in the data folder,
nats-server and redis-server from the Python dependencies, Mosquitto with the project's
configuration (or, without Mosquitto installed, the embedded broker). ``up`` hands the
URLs to its children through their environment and writes them to
``<data_dir>/engines.json``, so a worker started by hand with the same data folder joins.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr
from rich.console import Console

from powerflow.engines import (
    EmbeddedEngine,
    EmbeddedNats,
    EmbeddedRedis,
    EngineSetupError,
    bindable_port,
    rss_bytes,
    sqlite_url,
)
from powerflow.mqtt_embedded import ProjectBroker, broker_env, broker_for, broker_summary
from powerflow.simulate import DeviceLogin, enroll_fleet, fleet_codes
from powerflow_common.db.engine import migrate
from powerflow_common.engines_file import (
    engines_path,
    live_engines,
    remove_engines_file,
    write_engines_file,
)
from powerflow_common.settings import Settings, redact_url

console = Console(stderr=True)

DEFAULT_TLS_PORT = 8883
MOSQUITTO_DIR = "mosquitto"
REPORTS_DIR = "reports"
# How long the API may take to answer /readyz after its start (migrations are done by then).
READY_TIMEOUT_S = 60.0
READY_POLL_S = 0.2
# Children stop in this order: the simulator first, so ingest and writer drain what it sent.
STOP_ORDER = ("simulate", "api", "ingest", "writer", "aggregator", "alerts", "reporter")
CHILD_STOP_TIMEOUT_S = 15.0
EXIT_ALREADY_RUNNING = 3

# Credentials that would override the URL of an engine up runs itself (a stale password
# from the caller's environment must not replace the one in up's URL).
ENGINE_CREDENTIAL_VARIABLES = {
    "nats": ("POWERFLOW_NATS_USER", "POWERFLOW_NATS_PASSWORD", "POWERFLOW_NATS_PASSWORD_FILE"),
    "redis": ("POWERFLOW_REDIS_PASSWORD", "POWERFLOW_REDIS_PASSWORD_FILE"),
    "mqtt": (
        "POWERFLOW_MQTT_PASSWORD",
        "POWERFLOW_MQTT_PASSWORD_FILE",
        "POWERFLOW_BROKER_ADMIN_PASSWORD",
        "POWERFLOW_BROKER_ADMIN_PASSWORD_FILE",
    ),
}


@dataclass
class Engines:
    """The engines up runs on: the settings it hands on (URLs, the reports folder) by field
    name, and which engines it started."""

    values: dict[str, str] = field(default_factory=dict)
    embedded: dict[str, EmbeddedEngine] = field(default_factory=dict)
    broker: ProjectBroker | None = None
    # SQLite is a file, not a process: embedded when up chose it (no URL was set).
    embedded_database: bool = False
    tls_port: int | None = None

    def describe(self, engine: str, setting: str) -> str:
        url = redact_url(self.values.get(setting, ""))
        own = (
            engine in self.embedded
            or (engine == "mqtt" and self.broker is not None)
            or (engine == "database" and self.embedded_database)
        )
        return f"{url} ({'embedded' if own else 'yours'})"

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.stop()
        for engine in reversed(list(self.embedded.values())):
            engine.stop()


def start_engines(settings: Settings, data_dir: Path, *, mqtt_port: int, engines: Engines) -> None:
    """Start into ``engines`` every engine whose URL is not set (each loudly on failure)."""
    values = engines.values
    values["database_url"] = settings.database_url.get_secret_value() or sqlite_url(data_dir)
    engines.embedded_database = not settings.database_url.get_secret_value()
    if settings.nats_url:
        values["nats_url"] = settings.nats_url
    else:
        nats = EmbeddedNats(data_dir)
        nats.start()
        engines.embedded["nats"] = nats
        values["nats_url"] = nats.url
    if settings.redis_url.get_secret_value():
        values["redis_url"] = settings.redis_url.get_secret_value()
    else:
        redis = EmbeddedRedis(data_dir)
        redis.start()
        engines.embedded["redis"] = redis
        values["redis_url"] = redis.url
    if settings.mqtt_url.get_secret_value():
        values["mqtt_url"] = settings.mqtt_url.get_secret_value()
        if settings.broker_admin_url is not None:
            values["broker_admin_url"] = settings.broker_admin_url.get_secret_value()
        return
    port = bindable_port(mqtt_port)
    if port != mqtt_port:
        console.print(f"[yellow]port {mqtt_port} is taken; the broker uses {port}[/]")
    tls_port = bindable_port(DEFAULT_TLS_PORT)
    # The project's Mosquitto when installed (TLS too), else the embedded broker (a
    # nats-server of its own, MQTT 3.1.1): both closed, enrolled accounts only.
    broker = broker_for(
        data_dir,
        port,
        tls_port=tls_port,
        ingest_slots=settings.ingest_slots,
        namespace=settings.namespace,
    )
    broker.start()
    engines.broker = broker
    engines.tls_port = broker.tls_port
    # ingest's login and MQTT version, the admin (enrolment), the TLS port devices are told.
    # ingest logs in as slot 0 (the URL's username); every slot account shares its password.
    for variable, value in broker_env(broker).items():
        values[variable.removeprefix("POWERFLOW_").lower()] = value


def child_env(engines: Engines, data_dir: Path, *, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of every process ``up`` starts: the engines' URLs, the data folder.

    The closed broker: ingest logs in with its own account; the API (the dashboard's device
    enrolment), a ``devices`` command in this environment and the fleet's enrolment manage
    devices with the admin's, whose URL carries its password.
    """
    # One terminal for people: readable log lines unless JSON was asked for.
    env = {"POWERFLOW_LOG_FORMAT": "console", **environ}
    own = set(engines.embedded) | ({"mqtt"} if engines.broker is not None else set())
    for engine in own:
        for name in ENGINE_CREDENTIAL_VARIABLES[engine]:
            env.pop(name, None)
    env.update({f"POWERFLOW_{name.upper()}": value for name, value in engines.values.items()})
    env["POWERFLOW_DATA_DIR"] = str(data_dir)
    return env


def run_all(settings: Settings, *, devices: int, mqtt_port: int) -> int:
    """Start the engines and every process, wait for Ctrl-C; returns an exit code."""
    data_dir = settings.data_dir.resolve()
    running = live_engines(data_dir)
    if running is not None and running.pid != os.getpid():
        console.print(
            f"[red]powerflow up already runs with data folder {data_dir} (pid {running.pid}, "
            f"written in {engines_path(data_dir)})[/]: stop it, or set POWERFLOW_DATA_DIR to "
            "another folder"
        )
        return EXIT_ALREADY_RUNNING
    data_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    engines = Engines()
    children: dict[str, subprocess.Popen[str]] = {}
    try:
        start_engines(settings, data_dir, mqtt_port=mqtt_port, engines=engines)
        if "POWERFLOW_REPORTS_DIR" not in os.environ:
            # Report files in the data folder too, for up's reporter and one that joins.
            engines.values["reports_dir"] = str(data_dir / REPORTS_DIR)
        write_engines_file(data_dir, engines.values)
        return _run_children(settings, engines, children, data_dir, devices, started)
    except EngineSetupError as exc:
        console.print(f"[red]powerflow cannot start[/]: {exc}")
        return 1
    finally:
        # Whatever failed on the way (enrolment, migration, a child's pipe), nothing the
        # command started outlives it.
        for name in STOP_ORDER:
            process = children.get(name)
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name in STOP_ORDER:
            process = children.get(name)
            if process is not None:
                try:
                    process.wait(CHILD_STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
        engines.stop()
        remove_engines_file(data_dir)
        console.print("powerflow stopped")


def _with_engines(settings: Settings, engines: Engines) -> Settings:
    """up's own settings on its engines (migration, enrolment, the key)."""
    values = engines.values
    update: dict[str, object] = {
        "database_url": SecretStr(values["database_url"]),
        "nats_url": values["nats_url"],
        "redis_url": SecretStr(values["redis_url"]),
        "mqtt_url": SecretStr(values["mqtt_url"]),
    }
    if engines.broker is not None:
        # up's own broker: its admin URL carries the password (a password setting from the
        # caller's environment would replace it).
        update["broker_admin_url"] = SecretStr(values["broker_admin_url"])
        update["broker_admin_password"] = None
        update["mqtt_password"] = None
    return settings.model_copy(update=update)


def _run_children(
    base: Settings,
    engines: Engines,
    children: dict[str, subprocess.Popen[str]],
    data_dir: Path,
    devices: int,
    started: float,
) -> int:
    """Migrate, enrol the fleet, start every process into ``children``, wait for Ctrl-C."""
    settings = _with_engines(base, engines)
    env = child_env(engines, data_dir, environ=os.environ)
    migrate(settings.database_url.get_secret_value())
    logins: list[DeviceLogin] = []
    if devices:
        if settings.broker_admin_url is None:
            console.print(
                "[red]the simulated fleet needs the broker's admin[/]: set "
                "POWERFLOW_BROKER_ADMIN_URL for your broker, or start with --devices 0"
            )
            return 1
        # Enrolled like real devices, each with its own account and topic. Enrolling again
        # at every start rotates their passwords (the devices themselves are kept).
        logins = enroll_fleet(settings, fleet_codes(devices), by="powerflow up")
    exe = [sys.executable, "-m", "powerflow.cli"]
    commands = {
        name: [*exe, name]
        for name in ("ingest", "writer", "api", "aggregator", "alerts", "reporter")
    }
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
    stopping = False

    def request_stop(*_args: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    if not _wait_ready(settings, children["api"], lambda: stopping):
        return 0 if stopping else 1
    key = _development_key(settings)
    _print_screen(settings, engines, data_dir, key, devices, time.monotonic() - started)
    code = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None and name != "simulate":
                console.print(f"[red]{name} exited with {child.returncode}; stopping[/]")
                stopping, code = True, 1
        time.sleep(READY_POLL_S)
    return code


def _wait_ready(
    settings: Settings, api: subprocess.Popen[str], stopping: Callable[[], bool]
) -> bool:
    """Whether the API answered /readyz (False: it died, Ctrl-C came or time ran out)."""
    url = f"http://{_connect_host(settings.api_host)}:{settings.api_port}/readyz"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and not stopping():
        if api.poll() is not None:
            console.print(f"[red]the API exited with {api.returncode} at start; stopping[/]")
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(READY_POLL_S)
    if not stopping():
        console.print(f"[red]the API did not answer {url} within {READY_TIMEOUT_S:.0f} s[/]")
    return False


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _login_json(login: DeviceLogin) -> dict[str, str]:
    """A login as `powerflow devices enroll --json` prints it (what --credentials reads)."""
    return {"code": login.code, "username": login.username, "password": login.password}


DEV_KEY_NAME = "powerflow-up (development)"


def _development_key(settings: Settings) -> str:
    """A fresh development admin key (the previous one is revoked)."""
    from powerflow_api.keys import create_key, revoke_key
    from powerflow_common.db.engine import make_engine

    engine = make_engine(settings.database_url.get_secret_value())
    try:
        # A new key each start, shown once: the old one stops working, so none lingers.
        revoke_key(engine, DEV_KEY_NAME)
        key, _ = create_key(engine, DEV_KEY_NAME, "admin")
    finally:
        engine.dispose()
    return key


def _print_screen(
    settings: Settings,
    engines: Engines,
    data_dir: Path,
    key: str,
    devices: int,
    elapsed_s: float,
) -> None:
    """The one screen a person needs: where to look, how to connect a device, how to stop."""
    api = f"http://{_connect_host(settings.api_host)}:{settings.api_port}/"
    lines = [f"[bold green]powerflow is up[/] in {elapsed_s:.1f} s", ""]
    lines += [
        f"  [bold]Dashboard[/]  {api}  (OpenAPI at {api}schema)",
        f"  [bold]Admin key[/]  {key}  (new at each start; sign in with it)",
    ]
    broker = engines.broker
    if broker is not None:
        tls = f" and mqtts://{broker.connect_host}:{engines.tls_port}" if engines.tls_port else ""
        ca = data_dir / MOSQUITTO_DIR / "certs" / "ca.crt"
        pinned = f"; devices pin {ca}" if engines.tls_port else ""
        lines += [
            f"  [bold]Broker[/]     mqtt://{broker.connect_host}:{broker.port}{tls}",
            f"               {broker_summary(broker)}{pinned}",
        ]
    else:
        lines += [f"  [bold]Broker[/]     {engines.describe('mqtt', 'mqtt_url')}"]
    lines += [
        "  [bold]A device[/]   powerflow devices enroll CODE [--format tasmota|shelly|esphome]"
        "   prints what to put on it",
    ]
    if devices:
        lines += [f"  [bold]Simulated[/]  {devices} devices publishing every 5 s"]
    lines += [
        "",
        f"  [bold]Data[/]       {data_dir}  (delete it to start afresh)",
        f"               database  {engines.describe('database', 'database_url')}",
        f"               NATS      {engines.describe('nats', 'nats_url')}",
        f"               Redis     {engines.describe('redis', 'redis_url')}",
        f"  [bold]Join[/]       POWERFLOW_DATA_DIR={data_dir} powerflow writer"
        "   (any worker or command joins these engines)",
        "  [bold]Stop[/]       Ctrl-C",
    ]
    memory = {name: rss_bytes(e.pid) for name, e in engines.embedded.items() if e.pid}
    if memory:
        shown = ", ".join(f"{n} {b / 1024**2:.0f} MiB" for n, b in memory.items())
        lines += [f"  [dim]embedded engines' memory: {shown}[/]"]
    # One line per fact, never wrapped mid-URL by the terminal's width.
    console.print("\n".join(lines), soft_wrap=True)
