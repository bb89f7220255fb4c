"""``powerflow devices admit CODE...``: count devices that waited for admission.

A device first seen on an open listener (or over HTTP) is kept but counted in no total until
an operator admits it; admitting counts its whole history. Registered on the ``devices``
sub-app by ``powerflow.cli``; the rule lives in ``powerflow_common.admission`` (shared with
the API).
"""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from rich.console import Console

from powerflow.cli_settings import command_settings
from powerflow_common.admission import MAX_ADMIT_CODES, TooManyCodes, UnknownDevices, admit_devices

console = Console(stderr=True)

# Exit code when nothing was admitted (an unknown code, too many codes).
EXIT_REFUSED = 1


def _who(by: str | None) -> str:
    if by:
        return by
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no login name (a container without a passwd entry): ask for --by
        raise typer.BadParameter(
            "no OS user name found; say who you are", param_hint="--by"
        ) from None


def admit_command(
    codes: Annotated[
        list[str],
        typer.Argument(
            help=f"Device codes to admit (at most {MAX_ADMIT_CODES})", show_default=False
        ),
    ],
    by: Annotated[
        str | None, typer.Option(help="Who admits (recorded); default: cli:<OS user>")
    ] = None,
) -> None:
    """Admit waiting devices: their readings, past and future, count in totals and reports.

    All or nothing: an unknown code admits none. An admitted device stays as it was.
    """
    from powerflow_common.db.engine import make_engine

    settings = command_settings("database")
    who = _who(by)
    engine = make_engine(settings.database_url.get_secret_value())
    try:
        done = admit_devices(engine, codes, by=who)
    except (UnknownDevices, TooManyCodes) as exc:
        console.print(f"[red]nothing admitted[/]: {exc}")
        raise typer.Exit(EXIT_REFUSED) from exc
    finally:
        engine.dispose()
    for device in done:
        if device.newly:
            console.print(f"admitted {device.code} (by {device.admitted_by})")
        else:
            when = device.admitted_at.isoformat(timespec="seconds")
            console.print(f"{device.code} was already admitted ({when}, by {device.admitted_by})")
