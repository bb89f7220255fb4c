"""``powerflow correct`` and ``powerflow corrections``: overwrite a stored value on purpose, with
an audit trail, and see or finish what was corrected. Registered on the main app by
``powerflow.cli``; the rules live in ``powerflow_common.corrections`` (shared with the API).
"""

from __future__ import annotations

import asyncio
import getpass
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from powerflow.cli_settings import command_settings, instant_option
from powerflow_common.corrections import (
    MAX_LIST_LIMIT,
    CorrectionOutcome,
    CorrectionRequest,
    RepublishResult,
    correct,
    list_corrections,
    parse_assignments,
    republish_stale,
)
from powerflow_common.errors import CorrectionRefused, CorrectionTargetMissing
from powerflow_common.settings import Settings

console = Console(stderr=True)

# Exit codes: 1 refused (nothing changed), 3 changed but the totals are stale.
EXIT_REFUSED = 1
EXIT_TOTALS_STALE = 3


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry): ask for --by
        raise typer.BadParameter(
            "no OS user name found; say who you are", param_hint="--by"
        ) from None


def _refused(exc: CorrectionRefused) -> typer.Exit:
    kind = "not found" if isinstance(exc, CorrectionTargetMissing) else "refused"
    console.print(f"[red]{kind}[/]: {exc.detail} ({exc.reason}); nothing changed")
    return typer.Exit(EXIT_REFUSED)


async def _with_jetstream(
    settings: Settings, engine: Engine, request: CorrectionRequest
) -> CorrectionOutcome:
    from powerflow_common.jetstream import close_nats, connect_nats

    try:
        nc = await asyncio.wait_for(
            connect_nats(settings, name="powerflow-correct"), settings.nats_timeout_s * 2
        )
    except Exception as exc:  # the correction still goes in; its totals are reported stale
        console.print(f"[yellow]NATS unreachable ({type(exc).__name__})[/]")
        return await correct(engine, None, settings, request)
    try:
        return await correct(
            engine, nc.jetstream(timeout=settings.nats_timeout_s), settings, request
        )
    finally:
        await close_nats(nc)


def correct_command(
    device: Annotated[str, typer.Argument(help="The device code")],
    ts: Annotated[
        str, typer.Argument(help="The stored reading's time (ISO 8601, UTC if no offset)")
    ],
    assignments: Annotated[
        list[str],
        typer.Option("--set", help="COLUMN=VALUE, e.g. power_w=1600 (repeatable)"),
    ],
    reason: Annotated[str, typer.Option(help="Why the stored value is wrong (kept in the audit)")],
    by: Annotated[
        str | None, typer.Option("--by", help="Who corrects it; default: your OS user name")
    ] = None,
) -> None:
    """Overwrite measurement values of one stored reading; its hours' totals are recomputed.

    Every change is recorded (who, when, why, the old value) and shown by
    `powerflow corrections DEVICE`.

    Exit 1: refused, nothing changed; exit 3: changed, totals stale.
    """
    from powerflow_common.db.engine import make_engine

    settings = command_settings("database", "nats")
    try:
        request = CorrectionRequest(
            device_code=device,
            ts=instant_option(ts, "TS"),
            values=parse_assignments(assignments),
            reason=reason,
            corrected_by=by if by is not None else _os_user(),
        )
    except CorrectionRefused as exc:
        raise _refused(exc) from exc
    engine = make_engine(settings.database_url.get_secret_value())
    try:
        outcome = asyncio.run(_with_jetstream(settings, engine, request))
    except CorrectionRefused as exc:
        raise _refused(exc) from exc
    finally:
        engine.dispose()
    applied = outcome.applied
    for record in applied.changed:
        console.print(
            f"{record.device_code} {record.ts.isoformat()} {record.column_name}: "
            f"{record.old_value} -> {record.new_value} (correction {record.id})"
        )
    for name in applied.unchanged:
        console.print(f"{name} already holds that value: unchanged")
    hours = ", ".join(h.isoformat() for h in outcome.hours)
    if not outcome.totals_republished:
        console.print(
            f"[red]totals are stale[/]: the recompute of {hours} was not acknowledged "
            f"({outcome.error}). Run 'powerflow corrections --republish-stale' when NATS is "
            "back (or 'powerflow rollup --device ...' for those hours)."
        )
        raise typer.Exit(EXIT_TOTALS_STALE)
    console.print(f"hours recomputing: {hours}")


def corrections_command(
    device: Annotated[
        str | None, typer.Argument(help="The device code (optional with --republish-stale)")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only corrections made at or after (ISO 8601)")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_LIST_LIMIT, help="Newest first")] = 100,
    republish_stale_totals: Annotated[
        bool,
        typer.Option(
            "--republish-stale",
            help="Announce the recompute of every correction whose totals are stale",
        ),
    ] = False,
) -> None:
    """List a device's corrections (who, when, why, old and new value), or finish stale ones."""
    from powerflow_common.db.engine import make_engine

    settings = command_settings("database", "nats")
    engine = make_engine(settings.database_url.get_secret_value())
    try:
        if republish_stale_totals:
            result = asyncio.run(_republish(settings, engine, device))
            if result.failed:
                console.print(
                    f"[red]not acknowledged[/] ({result.failed}): {result.corrections} "
                    "correction(s) republished, the others still have stale totals"
                )
                raise typer.Exit(EXIT_TOTALS_STALE)
            console.print(
                f"{result.corrections} correction(s): {result.buckets} device-hour(s) recomputing"
            )
            return
        if device is None:
            raise typer.BadParameter(
                "name a device (or pass --republish-stale)", param_hint="DEVICE"
            )
        records = list_corrections(
            engine,
            device,
            since=instant_option(since, "--since") if since else None,
            limit=limit,
        )
    except CorrectionRefused as exc:
        raise _refused(exc) from exc
    finally:
        engine.dispose()
    table = Table("id", "reading ts (UTC)", "column", "old", "new", "by", "at", "reason", "totals")
    for r in records:
        table.add_row(
            str(r.id),
            r.ts.isoformat(timespec="milliseconds"),
            r.column_name,
            "" if r.old_value is None else repr(r.old_value),
            repr(r.new_value),
            r.corrected_by,
            r.corrected_at.isoformat(timespec="seconds"),
            r.reason,
            "ok" if r.totals_republished_at else "[red]stale[/]",
        )
    Console().print(table)


async def _republish(settings: Settings, engine: Engine, device: str | None) -> RepublishResult:
    from powerflow_common.jetstream import close_nats, connect_nats

    try:
        nc = await asyncio.wait_for(
            connect_nats(settings, name="powerflow-corrections"), settings.nats_timeout_s * 2
        )
    except Exception as exc:  # said plainly, with nothing changed
        return RepublishResult(corrections=0, buckets=0, failed=f"NATS unreachable: {exc!r}")
    try:
        return await republish_stale(
            engine, nc.jetstream(timeout=settings.nats_timeout_s), settings, device_code=device
        )
    finally:
        await close_nats(nc)
