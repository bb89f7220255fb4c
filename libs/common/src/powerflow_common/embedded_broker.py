"""Accounts of the embedded MQTT broker (nats-server's MQTT listener), kept in its folder.

The embedded broker (``powerflow.mqtt_embedded``) is a nats-server of its own that speaks
MQTT 3.1.1. It has no $CONTROL API: its accounts are a configuration file it reloads on
SIGHUP, so the admin is this module, reached through the broker's folder
(``POWERFLOW_BROKER_ADMIN_URL=file:///<data_dir>/mqtt``):

    <folder>/accounts.json    the truth: users, bcrypt hashes, topics (mode 0600)
    <folder>/accounts.conf    rendered from it, included by the broker's configuration (0600)
    <folder>/runtime.json     written by the running broker: its pid and monitoring port
    <folder>/accounts.lock    serialises changes between processes (the API and the CLI)

A change rewrites both files, sends SIGHUP and waits until the broker's monitoring endpoint
shows the new configuration loaded; a removed user's connections are closed by the broker on
reload and the admin waits until none is left. Who may write the folder controls the broker,
as whoever may read Mosquitto's admin password does.

The identity rules (docs/architecture.md, "Identity") as nats-server expresses them:

- Two NATS accounts. ``POWERFLOW_DEVICES`` holds every device user, each allowed to publish
  on its own topics' subjects only and to subscribe to nothing. ``POWERFLOW_INGEST`` holds
  the ingest users and imports the device subjects. MQTT sessions are per account, so no
  device can take over ingest's persistent session (nats-server has no
  ``use_username_as_clientid``: within DEVICES, one device can knock another off by using its
  client id, but never publish as it).
- A topic becomes a subject as nats-server maps it: ``/`` -> ``.``, ``+`` -> ``*``,
  ``#`` -> ``>`` (and the parent level), a ``.`` inside a level -> ``//`` (nats-server 2.10
  and later; 2.9 refuses topics with a ``.``).
- QoS 1 messages travel on ``$MQTT.msgs.<subject>`` (stored in the account's MQTT stream
  until the subscriber acks), QoS 0 on ``<subject>``: both are exported and imported.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

import bcrypt

from powerflow_common.errors import BrokerError
from powerflow_common.formats.registry import FORMATS, default_topics

DEVICES_ACCOUNT = "POWERFLOW_DEVICES"
INGEST_ACCOUNT = "POWERFLOW_INGEST"
STATE_FILE = "accounts.json"
ACCOUNTS_CONF = "accounts.conf"
RUNTIME_FILE = "runtime.json"
LOCK_FILE = "accounts.lock"
SECRET_MODE = 0o600
# The lab's anonymous devices log in as this user (the broker's ``no_auth_user``); it may
# publish on every device topic, and exists only in open-lab mode.
OPEN_LAB_USERNAME = "open-lab"
# What every format's devices publish on: the subjects DEVICES exports and INGEST imports.
DEVICE_TOPICS: tuple[str, ...] = default_topics(tuple(FORMATS.values()))
# nats-server's prefix of the subjects carrying QoS 1 messages into the account's stream.
QOS1_PREFIX = "$MQTT.msgs."
MQTT_DELIVERY_SUBJECTS = "$MQTT.sub.>"
# bcrypt's lowest cost: every password is 192+ random bits (no dictionary to slow down), and
# nats-server pays the cost at every MQTT connect (the simulated fleet connects at once).
BCRYPT_ROUNDS = 4
# How long a reload and a revoked client's disconnection may take before the change is
# reported as not applied.
RELOAD_POLL_S = 0.05
MONITOR_TIMEOUT_S = 2.0


class EmbeddedBrokerError(BrokerError):
    """The embedded broker's accounts could not be changed; the message says why."""


def topic_subjects(topic: str) -> tuple[str, ...]:
    """The NATS subjects an MQTT topic filter covers, as nats-server maps it.

    ``power/+/measurement`` -> ``power.*.measurement``; ``a/#`` -> ``a`` and ``a.>`` (MQTT's
    ``#`` also matches the parent level). Empty levels and spaces are refused: nats-server
    escapes or refuses them, and no device topic has them.
    """
    levels = topic.split("/")
    if not topic or "" in levels or " " in topic:
        raise ValueError(f"topic {topic!r} has an empty level or a space")
    mapped = ["*" if lv == "+" else ">" if lv == "#" else lv.replace(".", "//") for lv in levels]
    if mapped[-1] == ">" and len(mapped) > 1:
        return (".".join(mapped[:-1]), ".".join(mapped))
    return (".".join(mapped),)


def subjects(topics: Iterable[str]) -> list[str]:
    """Every subject of ``topics``, each once, in order."""
    return list(dict.fromkeys(s for t in topics for s in topic_subjects(t)))


def hash_password(password: str) -> str:
    """A bcrypt hash nats-server accepts in place of a password."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()


def password_matches(password: str, hashed: str) -> bool:
    return bcrypt.checkpw(password.encode(), hashed.encode())


# --- the state file and its rendering ---------------------------------------------------------


def empty_state() -> dict[str, Any]:
    return {"open_lab": False, "ingest": {}, "devices": {}}


def read_state(folder: Path) -> dict[str, Any]:
    """The accounts file, or an empty state when there is none yet."""
    path = folder / STATE_FILE
    if not path.exists():
        return empty_state()
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except ValueError as exc:
        raise EmbeddedBrokerError(f"{path} is not valid JSON: {exc}") from None
    for key, value in empty_state().items():
        state.setdefault(key, value)
    return state


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with a file created 0600 (it holds password hashes)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, SECRET_MODE)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    tmp.replace(path)


def write_state(folder: Path, state: dict[str, Any]) -> None:
    """Write the accounts file and the configuration rendered from it."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_private(folder / STATE_FILE, json.dumps(state, indent=2, sort_keys=True) + "\n")
    _write_private(folder / ACCOUNTS_CONF, render_accounts(state))


def _q(value: str) -> str:
    """A quoted string in nats-server's configuration (JSON's quoting; ``$`` stays literal)."""
    return json.dumps(value)


def _list(values: Iterable[str]) -> str:
    return "[" + ", ".join(_q(v) for v in values) + "]"


def _user(
    username: str, password_hash: str | None, *, publish: Sequence[str], subscribe: Sequence[str]
) -> str:
    # Nothing allowed is said as "deny everything": an empty allow list would allow all.
    pub = f"allow: {_list(publish)}" if publish else 'deny: [">"]'
    sub = f"allow: {_list(subscribe)}" if subscribe else 'deny: [">"]'
    # No password: the open lab's no_auth_user (nats-server refuses one that has a password).
    password = "" if password_hash is None else f" password: {_q(password_hash)},"
    return (
        f"      {{user: {_q(username)},{password}"
        f" permissions: {{publish: {{{pub}}}, subscribe: {{{sub}}}}},"
        ' allowed_connection_types: ["MQTT"]}'
    )


def render_accounts(state: dict[str, Any]) -> str:
    """The ``accounts`` block of the broker's configuration."""
    device_subjects = subjects(DEVICE_TOPICS)
    carried = [*device_subjects, *(QOS1_PREFIX + s for s in device_subjects)]
    devices = [
        _user(
            name,
            entry["password"],
            publish=subjects(entry.get("publish", [])),
            subscribe=subjects(entry.get("subscribe", [])),
        )
        for name, entry in sorted(state["devices"].items())
    ]
    if state.get("open_lab"):
        devices.append(_user(OPEN_LAB_USERNAME, None, publish=device_subjects, subscribe=()))
    # nats-server 2.9 also checks the subjects it delivers a QoS 1 subscription's messages
    # on (``$MQTT.sub.<id>``, its own); later versions do not need this.
    ingest_subscribe = [*device_subjects, MQTT_DELIVERY_SUBJECTS]
    ingest = [
        _user(name, hashed, publish=(), subscribe=ingest_subscribe)
        for name, hashed in sorted(state["ingest"].items())
    ]
    exports = ",\n".join(f"      {{stream: {_q(s)}}}" for s in carried)
    imports = ",\n".join(
        f"      {{stream: {{account: {DEVICES_ACCOUNT}, subject: {_q(s)}}}}}" for s in carried
    )
    newline = ",\n"
    return (
        "# Rendered by powerflow from accounts.json at every change: edit with\n"
        "# `powerflow devices`, never by hand.\n"
        "accounts {\n"
        f"  {DEVICES_ACCOUNT} {{\n"
        "    jetstream: enabled\n"
        f"    users: [\n{newline.join(devices)}\n    ]\n"
        f"    exports: [\n{exports}\n    ]\n"
        "  }\n"
        f"  {INGEST_ACCOUNT} {{\n"
        "    jetstream: enabled\n"
        f"    users: [\n{newline.join(ingest)}\n    ]\n"
        f"    imports: [\n{imports}\n    ]\n"
        "  }\n"
        "}\n"
    )


def reserved_usernames(state: dict[str, Any]) -> set[str]:
    """Names no device may take: the ingest users' and the open lab's."""
    return {*state["ingest"], OPEN_LAB_USERNAME}


def put_ingest(state: dict[str, Any], username: str, password: str) -> bool:
    """Make ``username`` an ingest user with ``password``; True when something changed."""
    hashed = state["ingest"].get(username)
    if hashed is not None and password_matches(password, hashed):
        return False
    if username in state["devices"]:
        raise EmbeddedBrokerError(f"{username!r} is a device account, not an ingest one")
    state["ingest"][username] = hash_password(password)
    return True


def set_open_lab(state: dict[str, Any], open_lab: bool) -> None:
    """Turn the anonymous open-lab user on or off (it has no password: anyone is it)."""
    state["open_lab"] = open_lab


# --- the running broker -----------------------------------------------------------------------


def write_runtime(folder: Path, *, pid: int, monitor_port: int, mqtt_port: int) -> None:
    """What a running broker tells its admins: where to signal and where to look."""
    _write_private(
        folder / RUNTIME_FILE,
        json.dumps({"pid": pid, "monitor_port": monitor_port, "mqtt_port": mqtt_port}) + "\n",
    )


def read_runtime(folder: Path) -> dict[str, int] | None:
    """The running broker's pid and ports; None when it is not running."""
    try:
        runtime: dict[str, int] = json.loads((folder / RUNTIME_FILE).read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(runtime["pid"], 0)
    except (OSError, KeyError):
        return None  # it stopped without removing the file (kill -9): nothing to reload
    # After a kill -9 the pid may be another process's now: never signal that one.
    cmdline = Path(f"/proc/{runtime['pid']}/cmdline")
    argv = cmdline.read_bytes().decode(errors="replace") if cmdline.exists() else None
    if argv is not None and str(folder.resolve()) not in argv:
        return None
    return runtime


def monitor(runtime: dict[str, int], path: str) -> dict[str, Any]:
    """One JSON answer of the broker's monitoring endpoint (loopback only)."""
    url = f"http://127.0.0.1:{runtime['monitor_port']}{path}"
    with urllib.request.urlopen(url, timeout=MONITOR_TIMEOUT_S) as answer:
        body: dict[str, Any] = json.loads(answer.read())
    return body


def connected_users(runtime: dict[str, int]) -> set[str]:
    """The users with an open connection."""
    body = monitor(runtime, "/connz?auth=true&limit=100000")
    return {str(c.get("authorized_user")) for c in body.get("connections") or []}


def reload_broker(folder: Path, timeout_s: float) -> bool:
    """Have the running broker load the accounts file; False when it is not running.

    Confirmed by the monitoring endpoint's ``config_load_time``: a configuration the broker
    refuses keeps the old one, and that must not pass for a change made.
    """
    runtime = read_runtime(folder)
    if runtime is None:
        return False
    try:
        before = monitor(runtime, "/varz").get("config_load_time")
        os.kill(runtime["pid"], signal.SIGHUP)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if monitor(runtime, "/varz").get("config_load_time") != before:
                return True
            time.sleep(RELOAD_POLL_S)
    except (OSError, urllib.error.URLError) as exc:
        raise EmbeddedBrokerError(f"the embedded broker could not be reloaded: {exc}") from None
    raise EmbeddedBrokerError(
        f"the embedded broker did not load its new accounts within {timeout_s} s (see "
        f"{folder}/nats-server.log); the file has the change, the broker may not"
    )


# --- the admin --------------------------------------------------------------------------------


def folder_from_url(url: str) -> Path:
    """The broker's folder named by a ``file://`` admin URL."""
    parts = urlsplit(url)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        raise EmbeddedBrokerError(
            f"the embedded broker's admin URL must be file:///<data_dir>/mqtt, not {url!r}"
        )
    return Path(unquote(parts.path))


class EmbeddedBrokerAdmin:
    """Device accounts of the embedded broker (``enrolment.DeviceAccounts``).

    Use it as a context manager, as ``broker_admin.BrokerAdmin``: the ``with`` block holds
    the folder's lock, so two processes' changes take turns. Each change is written, the
    broker reloaded and the result checked before the call returns.
    """

    def __init__(self, folder: Path, *, timeout_s: float = 10.0) -> None:
        self._folder = folder
        self._timeout_s = timeout_s
        self._lock: int | None = None

    def __enter__(self) -> EmbeddedBrokerAdmin:
        if not (self._folder / STATE_FILE).exists():
            raise EmbeddedBrokerError(
                f"no embedded broker in {self._folder} ({STATE_FILE} is missing): is it the "
                "data folder's mqtt/ that `powerflow up` uses?"
            )
        fd = os.open(self._folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, SECRET_MODE)
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise EmbeddedBrokerError(
                        "another change to the embedded broker's accounts did not finish; try again"
                    ) from None
                time.sleep(RELOAD_POLL_S)
        self._lock = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the folder (idempotent)."""
        fd, self._lock = self._lock, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _state(self) -> dict[str, Any]:
        if self._lock is None:
            raise EmbeddedBrokerError("EmbeddedBrokerAdmin is not open: use it in a `with` block")
        return read_state(self._folder)

    def _apply(self, state: dict[str, Any]) -> None:
        write_state(self._folder, state)
        reload_broker(self._folder, self._timeout_s)

    def set_client(
        self,
        username: str,
        password: str | None,
        *,
        publish: Sequence[str] = (),
        subscribe: Sequence[str] = (),
        textname: str | None = None,
    ) -> None:
        """Create or replace a device user allowed exactly ``publish`` and ``subscribe``.

        ``password`` None keeps the current one. A connected client keeps its connection
        with its old rights until it reconnects unless the reload closes it (nats-server
        closes a client whose user changed).
        """
        state = self._state()
        if username in reserved_usernames(state):
            raise EmbeddedBrokerError(f"{username!r} is an account powerflow owns; choose another")
        try:
            subjects(publish), subjects(subscribe)
        except ValueError as exc:
            raise EmbeddedBrokerError(str(exc)) from None
        entry = state["devices"].get(username)
        if entry is None and password is None:
            raise EmbeddedBrokerError(f"{username!r} does not exist: a new one needs a password")
        hashed = hash_password(password) if password is not None else entry["password"]
        state["devices"][username] = {
            "password": hashed,
            "publish": list(dict.fromkeys(publish)),
            "subscribe": list(dict.fromkeys(subscribe)),
            "textname": textname,
        }
        self._apply(state)

    def remove_client(self, username: str) -> bool:
        """Delete the user; the broker closes its connections. False if there was none."""
        state = self._state()
        if username in reserved_usernames(state):
            raise EmbeddedBrokerError(f"{username!r} is an account powerflow owns")
        if state["devices"].pop(username, None) is None:
            return False
        self._apply(state)
        self._wait_disconnected(username)
        return True

    def _wait_disconnected(self, username: str) -> None:
        runtime = read_runtime(self._folder)
        if runtime is None:
            return  # not running: nobody is connected
        deadline = time.monotonic() + self._timeout_s
        try:
            while username in connected_users(runtime):
                if time.monotonic() > deadline:
                    raise EmbeddedBrokerError(
                        f"{username!r} is removed but still connected after {self._timeout_s} s"
                    )
                time.sleep(RELOAD_POLL_S)
        except (OSError, urllib.error.URLError) as exc:
            raise EmbeddedBrokerError(f"the embedded broker did not answer: {exc}") from None

    def list_clients(self) -> list[str]:
        """Every device user's name."""
        return sorted(self._state()["devices"])
