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


# --- Import cycles inside each of our packages --------------------------------------------

PACKAGE_ROOTS = {
    "powerflow": ROOT / "src" / "powerflow",
    "powerflow_common": ROOT / "libs" / "common" / "src" / "powerflow_common",
    **{f"powerflow_{s.name}": s / "src" / f"powerflow_{s.name}" for s in SERVICES},
}


def module_name(root: Path, package: str, path: Path) -> str:
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules(package: str) -> dict[str, Path]:
    root = PACKAGE_ROOTS[package]
    return {module_name(root, package, path): path for path in sorted(root.rglob("*.py"))}


def imported_names(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``module`` imports anywhere (inside functions too).

    ``from a import b`` is an import of ``a.b`` when that is a module, else of ``a``.
    """
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names]
            targets = [t if t in known else base for t in targets]
        else:
            continue
        found |= {t for t in targets if t in known and t != module}
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: set[str] = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_the_cycle_finder_sees_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    graph = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}}
    assert import_cycles(graph) == [{"p.a", "p.b", "p.c"}]
    probe = tmp_path / "b.py"
    probe.write_text("def f():\n    from . import c\n    from p.a import thing\n")
    assert imported_names("p.b", probe, {"p", "p.a", "p.b", "p.c"}) == {"p.c", "p.a"}


@pytest.mark.parametrize("package", sorted(PACKAGE_ROOTS))
def test_a_package_has_no_import_cycle(package: str) -> None:
    modules = package_modules(package)
    known = set(modules)
    graph = {name: imported_names(name, path, known) for name, path in modules.items()}
    cycles = import_cycles(graph)
    assert cycles == []
