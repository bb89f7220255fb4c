"""The settings tables of the documentation, generated from the Settings object.

Each setting's meaning is its field's docstring in settings.py; this module renders them as
Markdown tables into the files that carry them, between marker comments::

    <!-- settings-table -->               every setting
    <!-- settings-table prefix=api_ -->   the settings whose field name starts with ``api_``
    ...
    <!-- /settings-table -->

Regenerate after adding or changing a setting (``make settings-doc`` runs it on README.md and
docs/api.md)::

    uv run python -m powerflow_common.settings_doc README.md docs/api.md

``--check`` changes nothing and exits 1 naming each file that differs.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from powerflow_common.errors import ConfigurationError
from powerflow_common.settings import (
    DEPRECATED_NAMES,
    FILE_SUFFIX,
    Settings,
    env_names,
    is_secret,
)

BLOCK = re.compile(
    r"(?P<open><!-- settings-table(?: prefix=(?P<prefix>[a-z_]+))? -->\n)"
    r".*?"
    r"(?P<close><!-- /settings-table -->)",
    re.DOTALL,
)
REGENERATE = "uv run python -m powerflow_common.settings_doc README.md docs/api.md"


class UndocumentedSetting(ConfigurationError):
    """A setting without a docstring: its row would say nothing."""


def _default(value: object) -> str:
    """A field's default as a reader would write it in the environment."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None or value == "":
        return "(unset)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return f"`{','.join(str(v) for v in value)}`" if value else "(empty)"
    if isinstance(value, float):
        return f"`{int(value)}`" if value.is_integer() else f"`{value!r}`"
    return f"`{value}`"


def _variables(name: str, field: FieldInfo) -> str:
    names = [f"`{v}`" for v in env_names(name, field)]
    text = names[0] if len(names) == 1 else f"{names[0]} (or {', '.join(names[1:])})"
    if is_secret(field):
        text += f", `{env_names(name, field)[0]}{FILE_SUFFIX}`"
    old = [f"`{o}`" for o, new in DEPRECATED_NAMES.items() if new == name]
    if old:
        text += f" (formerly {', '.join(old)}, still read with a warning)"
    return text


def _meaning(name: str, field: FieldInfo) -> str:
    if not field.description:
        raise UndocumentedSetting(
            f"Settings.{name} has no docstring: add one under the field in settings.py"
        )
    return " ".join(field.description.split()).replace("|", "\\|")


def settings_table(prefix: str = "") -> str:
    """The Markdown table of every setting whose field name starts with ``prefix``."""
    rows = [
        "| variable | meaning | default |",
        "|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        if name.startswith(prefix):
            rows.append(
                f"| {_variables(name, field)} | {_meaning(name, field)} | "
                f"{_default(field.default)} |"
            )
    return "\n".join(rows) + "\n"


def render(text: str) -> str:
    """``text`` with every settings-table block regenerated."""
    return BLOCK.sub(
        lambda m: m["open"] + settings_table(m["prefix"] or "") + m["close"],
        text,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m powerflow_common.settings_doc", description=__doc__.splitlines()[0]
    )
    parser.add_argument("files", nargs="+", type=Path, help="Markdown files with table markers")
    parser.add_argument("--check", action="store_true", help="change nothing; 1 if stale")
    args = parser.parse_args(argv)
    stale: list[Path] = []
    for path in args.files:
        text = path.read_text(encoding="utf-8")
        if not BLOCK.search(text):
            print(f"{path}: no <!-- settings-table --> block", file=sys.stderr)
            return 2
        try:
            fresh = render(text)
        except UndocumentedSetting as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            return 2
        if fresh != text:
            stale.append(path)
            if not args.check:
                path.write_text(fresh, encoding="utf-8")
    for path in stale:
        print(f"{path}: {'differs from the settings' if args.check else 'regenerated'}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
