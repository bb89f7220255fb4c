"""make rebuilds the dashboard only when its inputs changed, and lint never builds it.

Asked of the real make with dry runs (-n) and what-if (-W: as if that file had just changed,
without touching it), so nothing is built or modified here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pf_testing import missing_prerequisite

REPO = Path(__file__).resolve().parents[1]
INDEX = "services/api/src/powerflow_api/static/index.html"
NPM_CI = "npm ci"
BUILD = "npm run build"


def make(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("make")
    if binary is None:
        missing_prerequisite("make is not installed (deploy/packages.txt)")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    return subprocess.run(
        [binary, "--no-print-directory", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )


@pytest.fixture
def built() -> None:
    """The dashboard installed and built once (make test does it first): else every plan
    would rightly start with npm ci."""
    stamp = REPO / "dashboard/node_modules/.powerflow-npm-ci"
    if not (stamp.is_file() and (REPO / INDEX).is_file()):
        reason = "the dashboard is not installed and built here (make dashboard)"
        missing_prerequisite(reason)


def test_lint_never_builds_the_dashboard() -> None:
    plan = make("-n", "lint")
    assert plan.returncode == 0, plan.stderr
    assert "ruff" in plan.stdout and "mypy" in plan.stdout
    assert "npm" not in plan.stdout


def test_a_changed_source_rebuilds_without_reinstalling(built: None) -> None:
    plan = make("-n", "-W", "dashboard/src/main.ts", INDEX)
    assert plan.returncode == 0, plan.stderr
    assert BUILD in plan.stdout
    assert NPM_CI not in plan.stdout


def test_a_changed_lockfile_reinstalls_and_rebuilds() -> None:
    plan = make("-n", "-W", "dashboard/package-lock.json", INDEX)
    assert plan.returncode == 0, plan.stderr
    assert NPM_CI in plan.stdout and BUILD in plan.stdout


def test_nothing_changed_nothing_built(built: None) -> None:
    plan = make("-n", "dashboard")  # the Python environment's no-op sync, nothing of npm
    assert plan.returncode == 0, plan.stderr
    assert NPM_CI not in plan.stdout and BUILD not in plan.stdout
