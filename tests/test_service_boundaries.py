"""Each service depends on libs/common only: no import of, or dependency on, another service."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICES = sorted(p for p in (ROOT / "services").iterdir() if (p / "pyproject.toml").exists())
PACKAGES = {s.name: f"powerflow_{s.name}" for s in SERVICES}


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports, inside functions too."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f():\n    from powerflow_reporter.job import run\n    import powerflow_writer\n"
    )
    assert imported_modules(probe) == {"powerflow_reporter", "powerflow_writer"}


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_a_service_imports_no_other_service(service: Path) -> None:
    others = set(PACKAGES.values()) - {PACKAGES[service.name]}
    offences = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted(service.glob("src/**/*.py"))
        for name in sorted(imported_modules(path) & others)
    ]
    assert offences == []


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_a_service_depends_on_no_other_service(service: Path) -> None:
    project = tomllib.loads((service / "pyproject.toml").read_text())["project"]
    names = {
        dep.split("[")[0].split(">")[0].split("=")[0].strip() for dep in project["dependencies"]
    }
    others = {f"powerflow-{s.name}" for s in SERVICES} - {f"powerflow-{service.name}"}
    assert names & others == set()
