"""Commands for hourly rollups and emission factors: ``aggregator``, ``rollup``, ``factors``,
``import legacy``. Registered on the main app by ``powerflow.cli``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, cast

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Table as SqlTable
from sqlalchemy import func, insert, select, update

from powerflow.cli_settings import command_settings, instant_option
from powerflow_common.db.dialect import begin_write
from powerflow_common.db.models import EmissionFactorRow, HourlyStat, ReadingRow
from powerflow_common.settings import redact_url

console = Console(stderr=True)
factors_app = typer.Typer(no_args_is_help=True, help="Emission factors: list them, add or fix one.")
import_app = typer.Typer(no_args_is_help=True, help="Import readings from elsewhere.")

_factors = cast(SqlTable, EmissionFactorRow.__table__)
_readings = cast(SqlTable, ReadingRow.__table__)
_stats = cast(SqlTable, HourlyStat.__table__)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def aggregator() -> None:
    """Run a PERSISTED -> hourly_stats aggregator (run as many as you like)."""
    from powerflow_aggregator.service import main

    main(command_settings("database", "nats"))


def rollup(
    start: Annotated[
        str | None,
        typer.Option("--from", help="First hour (ISO 8601, UTC if no offset); default: earliest"),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--to", help="End, exclusive (ISO 8601, UTC if no offset); default: now"),
    ] = None,
    device: Annotated[
        list[str] | None, typer.Option("--device", help="Only this device code (repeatable)")
    ] = None,
    changed_set: Annotated[
        bool,
        typer.Option(
            "--changed-set",
            help="Only hours computed with another factor set than POWERFLOW_FACTOR_SET",
        ),
    ] = False,
) -> None:
    """Recompute hourly_stats from raw readings for a range (after a factor or set change)."""
    from powerflow_aggregator.rollup import RollupConfig, buckets_in_range, recompute_buckets
    from powerflow_common.db.engine import make_engine

    settings = command_settings("database")
    engine = make_engine(settings.database_url.get_secret_value())
    try:
        first = None if start is None else instant_option(start, "--from")
        if first is None:
            with engine.connect() as conn:
                earliest = conn.execute(select(func.min(_readings.c.ts))).scalar()
                earliest_stat = conn.execute(select(func.min(_stats.c.hour_start))).scalar()
            known = [t.replace(tzinfo=UTC) for t in (earliest, earliest_stat) if t is not None]
            first = min(known) if known else datetime.now(UTC)
        last = (
            instant_option(end, "--to")
            if end is not None
            else datetime.now(UTC) + timedelta(hours=1)
        )
        buckets = buckets_in_range(
            engine,
            first,
            last,
            device_codes=device or (),
            other_factor_set_than=settings.factor_set if changed_set else None,
        )
        with _progress() as progress:
            task = progress.add_task("recomputing hours", total=len(buckets))
            result = recompute_buckets(
                engine,
                buckets,
                RollupConfig.from_settings(settings),
                on_bucket=lambda _bucket: progress.advance(task),
            )
    finally:
        engine.dispose()
    console.print(
        f"{result.recomputed} device-hours recomputed with factor set "
        f"[bold]{settings.factor_set}[/] ({result.follow_on} follow-on, {result.removed} "
        f"emptied, {result.missing_factor} without a factor, {result.frozen} frozen: CO2 from "
        f"stored kWh, {len(result.failed)} failed)"
    )
    for bucket, error in result.failed[:20]:
        console.print(f"[red]failed[/] device {bucket.device_id} {bucket.hour_start}: {error}")
    if result.failed:
        raise typer.Exit(1)


@factors_app.command("list")
def factors_list(
    factor_set: Annotated[str | None, typer.Option("--set", help="Only this set")] = None,
) -> None:
    """Show the emission factors; the set in force (POWERFLOW_FACTOR_SET) is marked."""
    from powerflow_common.db.engine import make_engine

    settings = command_settings("database")
    engine = make_engine(settings.database_url.get_secret_value())
    query = select(_factors).order_by(
        _factors.c.factor_set, _factors.c.region, _factors.c.valid_from
    )
    if factor_set is not None:
        query = query.where(_factors.c.factor_set == factor_set)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    engine.dispose()
    table = Table("id", "set", "region", "from", "to", "kg CO2e/kWh", "method", "source")
    for r in rows:
        in_force = r.factor_set == settings.factor_set
        table.add_row(
            str(r.id),
            f"[bold]{r.factor_set} *[/]" if in_force else r.factor_set,
            r.region,
            str(r.valid_from or "-"),
            str(r.valid_to or "-"),
            f"{r.kg_co2e_per_kwh:g}",
            r.method,
            r.source,
        )
    Console().print(table)
    console.print(
        f"* in force: POWERFLOW_FACTOR_SET={settings.factor_set}, "
        f"default region POWERFLOW_EMISSION_REGION={settings.emission_region}"
    )


@factors_app.command("set")
def factors_set(
    factor_set: Annotated[str, typer.Option("--set", help="Factor set, e.g. kr-gir")],
    region: Annotated[str, typer.Option(help="Grid region, e.g. KR")],
    kg_per_kwh: Annotated[float, typer.Option("--kg-per-kwh", help="kg CO2e per kWh", min=0)],
    source: Annotated[str, typer.Option(help="Publisher, document and year")],
    valid_from: Annotated[
        str | None, typer.Option("--from", help="First consumption day (YYYY-MM-DD)")
    ] = None,
    valid_to: Annotated[
        str | None, typer.Option("--to", help="Day after the last one (YYYY-MM-DD), exclusive")
    ] = None,
    method: Annotated[str, typer.Option(help="location or market")] = "location",
) -> None:
    """Add a factor, or correct the one with the same set, region, method and start day."""
    from powerflow_common.db.engine import make_engine

    if method not in ("location", "market"):
        raise typer.BadParameter("must be location or market", param_hint="--method")
    first = date.fromisoformat(valid_from) if valid_from else None
    after = date.fromisoformat(valid_to) if valid_to else None
    if first is not None and after is not None and after <= first:
        raise typer.BadParameter("must be after --from", param_hint="--to")
    settings = command_settings("database")
    engine = make_engine(settings.database_url.get_secret_value())
    values = {"valid_to": after, "kg_co2e_per_kwh": kg_per_kwh, "source": source[:255]}
    with begin_write(engine) as conn:
        # The unique key cannot see two NULL start days as equal, so look up null-safely.
        existing = conn.execute(
            select(_factors.c.id).where(
                _factors.c.factor_set == factor_set,
                _factors.c.region == region,
                _factors.c.method == method,
                _factors.c.valid_from.is_not_distinct_from(first),
            )
        ).scalar()
        if existing is None:
            conn.execute(
                insert(_factors).values(
                    factor_set=factor_set, region=region, method=method, valid_from=first, **values
                )
            )
            verb = "added"
        else:
            conn.execute(update(_factors).where(_factors.c.id == existing).values(**values))
            verb = "updated"
    engine.dispose()
    console.print(
        f"factor {verb}: {factor_set}/{region} {kg_per_kwh:g} kg CO2e/kWh "
        f"from {first or 'the beginning'} to {after or 'open end'}. Stored hours keep their "
        "figures until recomputed: run `powerflow rollup --from ... --to ...` over the period "
        f"(the set in force is POWERFLOW_FACTOR_SET={settings.factor_set})."
    )


@import_app.command("legacy")
def import_legacy_command(
    from_url: Annotated[
        str, typer.Option("--from-url", help="The prototype's database, mysql+pymysql://...")
    ],
    source_timezone: Annotated[
        str, typer.Option(help="Zone of the prototype's timestamps (they carry no offset)")
    ] = "UTC",
    chunk_rows: Annotated[int, typer.Option(help="Rows per transaction", min=1)] = 5_000,
) -> None:
    """Import the prototype's power_readings table through ingest's validation, then roll up."""
    from sqlalchemy.exc import SQLAlchemyError

    from powerflow.legacy import import_legacy, legacy_row_count
    from powerflow_common.db.engine import make_engine

    settings = command_settings("database")
    engine = make_engine(settings.database_url.get_secret_value())
    try:
        total = legacy_row_count(from_url)
        with _progress() as progress:
            rows_task = progress.add_task("importing rows", total=total)
            hours_task = progress.add_task("rolling up hours", total=None)
            outcome = import_legacy(
                engine,
                from_url,
                settings,
                source_timezone=source_timezone,
                chunk_rows=chunk_rows,
                on_rows=lambda n: progress.advance(rows_task, n),
                before_rollup=lambda n: progress.update(hours_task, total=n),
                on_bucket=lambda _bucket: progress.advance(hours_task),
            )
    except SQLAlchemyError as exc:
        console.print(f"[red]import from {redact_url(from_url)} failed:[/] {str(exc)[:300]}")
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    rejected = sum(outcome.rejected.values())
    console.print(
        f"read {outcome.read} rows from {redact_url(from_url)}: {outcome.inserted} new, "
        f"{outcome.duplicates} already stored, {rejected} rejected"
    )
    if rejected:
        table = Table("rejected because", "rows")
        for reason, count in outcome.rejected.most_common():
            table.add_row(reason, str(count))
        Console().print(table)
        for row, why in outcome.examples:
            console.print(f"  {row}: {why}")
    if outcome.rollup is not None:
        console.print(
            f"{outcome.rollup.recomputed} device-hours rolled up with factor set "
            f"{settings.factor_set}"
        )
