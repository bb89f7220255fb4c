"""The project's wheels install as a working `powerflow` command, beyond the clone.

Builds every workspace member's wheel (what `make dist` does), installs them with `uv tool
install` into a tool folder of the test's own (the uv cache is shared, so this takes seconds
once warm) and runs the installed command from outside the source tree. Internal packages come
from their wheel files only: uv reports each as installed "from file://".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from pf_testing import missing_prerequisite
from powerflow.broker import BROKER_CONFIG

REPO = Path(__file__).resolve().parents[1]
DASHBOARD_INDEX = REPO / "services/api/src/powerflow_api/static/index.html"
INTERNAL = (
    "powerflow-common",
    "powerflow-ingest",
    "powerflow-writer",
    "powerflow-api",
    "powerflow-aggregator",
    "powerflow-reporter",
    "powerflow-alerts",
)
# What the installed environment reports about itself (run with its own Python).
PROBE = """
import importlib.util, json, pathlib
import powerflow_api
from powerflow.broker import BROKER_CONFIG
from powerflow_reporter.fonts import FONT_FACES, font_path
print(json.dumps({
    "index": str(pathlib.Path(powerflow_api.__file__).parent / "static" / "index.html"),
    "broker_config": str(BROKER_CONFIG),
    "fonts": [str(font_path(face)) for face in FONT_FACES],
    "matplotlib": importlib.util.find_spec("matplotlib") is not None,
}))
"""

pytestmark = pytest.mark.slow


def uv_binary() -> str:
    # `uv run` names itself in UV (pytest under `make test` runs so); else uv on PATH.
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.fail("uv is neither in $UV nor on PATH (the project is built with it: README)")
    return uv


def install_command(uv: str, dist: Path) -> list[str]:
    """README's "Installing" command: the main wheel, each internal one given as a file."""
    (main,) = dist.glob("powerflow-[0-9]*.whl")
    command = [uv, "tool", "install", "--constraints", str(dist / "constraints.txt")]
    command += ["--excludes", str(dist / "excludes.txt"), str(main)]
    for wheel in sorted(dist.glob("powerflow_*.whl")):
        command += ["--with", str(wheel)]
    return command


@pytest.fixture
def tool_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """uv's environment with a tool folder of this test's own; removed afterwards."""
    tools = tmp_path / "uv-tools"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERFLOW_", "VIRTUAL_ENV"))}
    env.update(UV_TOOL_DIR=str(tools / "tools"), UV_TOOL_BIN_DIR=str(tools / "bin"))
    yield env
    shutil.rmtree(tools, ignore_errors=True)


def test_the_wheels_install_a_working_powerflow_with_the_dashboard_and_broker_config(
    tmp_path: Path, tool_env: dict[str, str]
) -> None:
    if not DASHBOARD_INDEX.is_file():
        reason = f"the API wheel needs the built dashboard {DASHBOARD_INDEX} (make dashboard)"
        missing_prerequisite(reason)
    uv = uv_binary()
    dist = tmp_path / "dist"
    subprocess.run(
        [uv, "build", "--all-packages", "--wheel", "-o", str(dist)],
        cwd=REPO,
        env=tool_env,
        check=True,
        capture_output=True,
    )
    # What `make dist` writes beside the wheels: the lock's versions and the exclusions.
    export = ["--quiet", "--frozen", "--no-dev", "--all-packages", "--no-emit-workspace"]
    export += ["--no-hashes", "--no-header", "--no-annotate"]
    subprocess.run(
        [uv, "export", *export, "-o", str(dist / "constraints.txt")],
        cwd=REPO,
        env=tool_env,
        check=True,
    )
    excludes = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["uv"]
    (dist / "excludes.txt").write_text("\n".join(excludes["exclude-dependencies"]) + "\n")
    sizes = {wheel.name: wheel.stat().st_size for wheel in dist.glob("*.whl")}
    print("wheel sizes (bytes):", json.dumps(sizes, indent=1))
    assert len(sizes) == 1 + len(INTERNAL)

    installed = subprocess.run(
        install_command(uv, dist),
        cwd=tmp_path,
        env=tool_env,
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stderr
    for name in INTERNAL:  # from the wheel files, never an index
        lines = [line for line in installed.stderr.splitlines() if f" {name}==" in line]
        assert lines and all("(from file://" in line for line in lines), installed.stderr
    locked = dict(
        line.split("==", 1)
        for line in (dist / "constraints.txt").read_text().splitlines()
        if "==" in line and ";" not in line
    )
    for line in installed.stderr.splitlines():  # third-party: the lock's versions
        name, _, version = line.strip().removeprefix("+ ").partition("==")
        if name in locked:
            assert version == locked[name], line

    command = Path(tool_env["UV_TOOL_BIN_DIR"]) / "powerflow"
    helped = subprocess.run(
        [str(command), "--help"], cwd=tmp_path, env=tool_env, capture_output=True, text=True
    )
    assert helped.returncode == 0, helped.stderr
    for subcommand in ("up", "api", "ingest", "writer", "reporter", "migrate"):
        assert subcommand in helped.stdout

    python = Path(tool_env["UV_TOOL_DIR"]) / "powerflow" / "bin" / "python"
    probe = subprocess.run(
        [str(python), "-c", PROBE], cwd=tmp_path, env=tool_env, capture_output=True, text=True
    )
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    tool_root = Path(tool_env["UV_TOOL_DIR"])
    for key in ("index", "broker_config"):
        assert Path(found[key]).is_relative_to(tool_root), found  # not the source tree
    assert Path(found["index"]).read_bytes() == DASHBOARD_INDEX.read_bytes()
    assert Path(found["broker_config"]).read_bytes() == BROKER_CONFIG.read_bytes()
    assert all(Path(font).is_file() for font in found["fonts"]), found
    assert not found["matplotlib"]  # excluded: the font package's unused dependency
