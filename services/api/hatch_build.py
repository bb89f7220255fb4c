"""Build hook: the API wheel carries the built dashboard, or the build fails saying so.

static/ is the Vite build's output (make dashboard), ignored by git and so by hatch unless
listed as an artifact (pyproject.toml). A wheel without it would install an API whose / says
nothing useful, so a release build without it stops here; editable installs (uv sync) do not
need it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.config import BuilderConfig
from hatchling.builders.hooks.plugin.interface import BuildHookInterface

DASHBOARD_INDEX = Path("src/powerflow_api/static/index.html")


class DashboardHook(BuildHookInterface[BuilderConfig]):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        if not (Path(self.root) / DASHBOARD_INDEX).is_file():
            raise RuntimeError(
                f"{DASHBOARD_INDEX} is missing: build the dashboard first (`make dashboard`, "
                "or `make dist`, which does)"
            )
