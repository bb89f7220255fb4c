"""The settings of one CLI command: loaded once in the command, with the engines it needs."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.console import Console

from powerflow_common.errors import ConfigurationError
from powerflow_common.logs import configure_logging
from powerflow_common.settings import Engine, Settings, load_settings

# A command that cannot start for want of configuration (a missing URL, an unreadable
# secret file) exits with this code and says what to set.
EXIT_NOT_CONFIGURED = 2

console = Console(stderr=True)


def command_settings(*engines: Engine, **overrides: object) -> Settings:
    """Settings with a URL for each of ``engines``, logging configured; else exit 2, saying why."""
    try:
        settings = load_settings(require=engines, **overrides)
    except ConfigurationError as exc:
        console.print(f"[red]powerflow cannot start[/]: {exc}")
        raise typer.Exit(EXIT_NOT_CONFIGURED) from None
    configure_logging(settings.log_level, settings.log_format, secrets=settings.secret_values())
    return settings


def instant_option(value: str, option: str) -> datetime:
    """An ISO 8601 date or datetime given on the command line; without an offset it is UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 date or time", param_hint=option
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
