"""``powerflow retention``: one run of the retention job (future partitions, raw horizon, deletes).

Every aggregator runs the same job every ``POWERFLOW_RETENTION_INTERVAL_S``; this command is for
cron (with the interval at 0), for a first run after setting ``POWERFLOW_RAW_RETENTION_DAYS``, and
to see what the job would keep and why.
"""

from __future__ import annotations

import typer
from rich.console import Console

from powerflow.cli_settings import command_settings

console = Console(stderr=True)


def retention_command() -> None:
    """Create future monthly partitions, move the raw horizon, delete raw readings beyond it."""
    from powerflow_aggregator.retention_job import RetentionError, run_retention
    from powerflow_common.db.engine import make_engine

    settings = command_settings("database")
    engine = make_engine(settings.database_url.get_secret_value())
    try:
        outcome = run_retention(engine, settings)
    except RetentionError as exc:
        console.print(f"[red]retention stopped[/]: {exc}")
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    if outcome.skipped:
        console.print("another process is running the retention job; nothing done")
        return
    if outcome.partitioned is False:
        console.print(
            "[red]readings is not partitioned[/]: run `powerflow migrate`; raw readings were "
            "deleted in batches instead of dropping months"
        )
    if outcome.partitions_added:
        console.print(f"partitions added: {', '.join(outcome.partitions_added)}")
    if settings.raw_retention_days is None:
        console.print("POWERFLOW_RAW_RETENTION_DAYS is not set: raw readings are kept for ever")
        return
    horizon = "none" if outcome.horizon is None else outcome.horizon.isoformat()
    console.print(
        f"raw horizon {horizon} (target {outcome.target.isoformat() if outcome.target else '-'}): "
        "hours before it are frozen"
    )
    short = outcome.horizon and outcome.target and outcome.horizon < outcome.target
    if short and not outcome.not_rolled_up:
        console.print("at most 92 days are frozen a run: the next run goes on")
    if outcome.not_rolled_up:
        first = outcome.not_rolled_up[0]
        console.print(
            f"[yellow]held back[/]: device {first.device_id} hour {first.hour_start.isoformat()}"
            " is not rolled up yet (is the aggregator running?)"
        )
    if outcome.partitions_dropped:
        console.print(f"partitions dropped: {', '.join(outcome.partitions_dropped)}")
    if outcome.rows_deleted:
        console.print(f"raw readings deleted: {outcome.rows_deleted}")
