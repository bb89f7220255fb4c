"""Run a Mosquitto with the project's configuration on a chosen port and data folder."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BROKER_CONFIG = PROJECT_ROOT / "deploy" / "mosquitto" / "mosquitto.conf"


def free_port(preferred: int | None = None, host: str = "127.0.0.1") -> int:
    """``preferred`` when nothing listens there, else a free port the OS picks."""
    if preferred is not None:
        with socket.socket() as s:
            if s.connect_ex((host, preferred)) != 0:
                return preferred
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def render_config(port: int, data_dir: Path, host: str = "127.0.0.1") -> str:
    """The project's broker configuration with its listener and data folder replaced."""
    text = BROKER_CONFIG.read_text()
    text = re.sub(r"(?m)^listener .*$", f"listener {port} {host}", text)
    return re.sub(r"(?m)^persistence_location .*$", f"persistence_location {data_dir}/", text)


class Broker:
    """One Mosquitto process with the project's configuration."""

    def __init__(self, port: int, data_dir: Path) -> None:
        self.port = port
        self.data_dir = data_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        """Start it and wait until it accepts connections."""
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "mosquitto.conf"
        config.write_text(render_config(self.port, self.data_dir))
        log = (self.data_dir / "mosquitto.log").open("ab")
        # Its own process group, so a Ctrl-C meant for us does not stop it before its clients.
        self.process = subprocess.Popen(
            [binary, "-c", str(config)], stdout=log, stderr=log, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited at start; see {self.data_dir}/mosquitto.log")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout_s} s")

    def stop(self, kill: bool = False) -> None:
        """Stop it cleanly (it saves its store) or, with ``kill``, at once."""
        if self.process is None or self.process.poll() is not None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(10)
