"""The ``powerflow`` command line: one entry point for every process and chore."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from powerflow import (
    admission_cli,
    baselines_cli,
    broker_cli,
    corrections_cli,
    devices_cli,
    energy_cli,
    retention_cli,
)
from powerflow.backup_cli import backup as backup_command
from powerflow.cli_settings import command_settings
from powerflow_common.settings import redact_url

app = typer.Typer(no_args_is_help=True, help="powerflow: electricity, carbon and ESG reports.")
console = Console(stderr=True)


@app.command()
def migrate() -> None:
    """Create the database if needed and bring its schema up to date."""
    from powerflow_common.db.engine import migrate as run_migrations

    settings = command_settings("database")
    url = settings.database_url.get_secret_value()
    run_migrations(url)
    console.print(f"database migrated: {redact_url(url)}")


# A consistent copy of the SQLite database while everything runs (docs/operations.md).
app.command("backup")(backup_command)


@app.command()
def ingest() -> None:
    """Run the MQTT -> JetStream bridge."""
    from powerflow_common.errors import ConfigurationError
    from powerflow_ingest.service import main

    try:
        main(command_settings("mqtt", "nats"))
    except ConfigurationError as exc:
        console.print(f"[red]ingest cannot start[/]: {exc}")
        raise typer.Exit(2) from None


@app.command()
def writer() -> None:
    """Run a READINGS -> database writer (run as many as you like)."""
    from powerflow_writer.service import main

    main(command_settings("database", "nats"))


# The project's Mosquitto: `broker`, `broker certs`.
app.add_typer(broker_cli.app, name="broker")

# Rollups and carbon: `aggregator`, `rollup`, `factors list|set`, `import legacy`.
app.command()(energy_cli.aggregator)
app.command()(energy_cli.rollup)
app.add_typer(energy_cli.factors_app, name="factors")
app.add_typer(energy_cli.import_app, name="import")
# Raw-reading retention and monthly partitions: `retention`.
app.command("retention")(retention_cli.retention_command)


# Alerts: the rule worker and its webhook / e-mail deliveries.
@app.command()
def alerts() -> None:
    """Run an alerts worker: rules on live readings and rolled-up hours (any number of copies)."""
    from powerflow_alerts.service import main
    from powerflow_common.errors import ConfigurationError

    try:
        main(command_settings("database", "nats"))
    except ConfigurationError as exc:
        console.print(f"[red]alerts cannot start[/]: {exc}")
        raise typer.Exit(2) from None


# Operator corrections of stored values: `correct`, `corrections`.
app.command("correct")(corrections_cli.correct_command)
app.command("corrections")(corrections_cli.corrections_command)

# Baselines and savings: `weather import|outdoor`, `baseline fit|savings`.
app.add_typer(baselines_cli.weather_app, name="weather")
app.add_typer(baselines_cli.baseline_app, name="baseline")

# Devices: `devices enroll|revoke|list` (broker credentials per device) and `devices admit`.
devices_cli.devices_app.command("admit")(admission_cli.admit_command)
app.add_typer(devices_cli.devices_app, name="devices")


@app.command()
def api() -> None:
    """Run the HTTP API, live WebSocket and dashboard (POWERFLOW_API_HOST/PORT)."""
    from powerflow_api.service import main

    main(command_settings("database", "nats", "redis"))


@app.command()
def reporter() -> None:
    """Run a report worker (dramatiq on Redis), the reaper and, if enabled, the monthly schedule."""
    from powerflow_reporter.service import main

    main(command_settings("database", "redis"))


@app.command()
def report(
    start: Annotated[str, typer.Option("--from", help="First local day, YYYY-MM-DD")],
    end: Annotated[str, typer.Option("--to", help="Day after the last, YYYY-MM-DD (exclusive)")],
    site: Annotated[int | None, typer.Option(help="A site's id; all sites when omitted")] = None,
    lang: Annotated[str, typer.Option(help="en or ko")] = "en",
    wait: Annotated[bool, typer.Option(help="Follow the report until it is done")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait")] = 900.0,
) -> None:
    """Ask for an ESG report (HTML, PDF, Markdown, facts JSON); a reporter worker makes it."""
    from datetime import date

    from powerflow_reporter.command import request_report

    if lang not in ("en", "ko"):
        console.print("[red]--lang must be en or ko[/]")
        raise typer.Exit(2)
    try:
        first, following = date.fromisoformat(start), date.fromisoformat(end)
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    raise typer.Exit(
        request_report(
            command_settings("database", "redis"),
            start=first,
            end=following,
            site_id=site,
            language="ko" if lang == "ko" else "en",
            wait=wait,
            timeout_s=timeout,
            console=console,
        )
    )


keys_app = typer.Typer(no_args_is_help=True, help="API keys: create (shown once), list, revoke.")
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who or what uses the key, e.g. dashboard")],
    role: Annotated[
        str, typer.Option(help="device (ingest only), viewer, operator or admin")
    ] = "viewer",
    device: Annotated[
        list[str] | None,
        typer.Option(
            "--device",
            help="A device a device key may post readings for (repeatable; required for "
            "--role device, refused for other roles)",
        ),
    ] = None,
) -> None:
    """Create a key and print it once; only its sha256 is stored."""
    from powerflow_api.keys import check_devices, check_role, create_key
    from powerflow_common.db.engine import make_engine

    try:  # refuse a wrong command line before touching the database
        check_devices(check_role(role), device or [])
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    settings = command_settings("database")
    engine = make_engine(settings.database_url.get_secret_value())
    try:
        key, row = create_key(engine, name, role, device or [])
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    finally:
        engine.dispose()
    bound = f", for devices {', '.join(device or [])}" if device else ""
    console.print(f"key {row.id} '{row.name}' ({row.role}{bound}); it is shown only now:")
    print(key)


@keys_app.command("list")
def keys_list() -> None:
    """List keys: id, name, prefix, role, devices, created and revoked times (never the keys)."""
    from powerflow_api.keys import all_key_devices, list_keys
    from powerflow_common.db.engine import make_engine

    settings = command_settings("database")
    engine = make_engine(settings.database_url.get_secret_value())
    try:
        rows = list_keys(engine)
        bindings = all_key_devices(engine)
    finally:
        engine.dispose()
    table = Table("id", "name", "prefix", "role", "devices", "created", "revoked")
    for row in rows:
        codes = bindings.get(row.id, [])
        if row.role == "device":
            shown = ", ".join(codes) if codes else "none (made before 0007: posts nothing)"
        else:
            shown = "any" if row.role in ("operator", "admin") else ""
        table.add_row(
            str(row.id),
            row.name,
            f"pf_{row.prefix}_…",
            row.role,
            shown,
            row.created_at.isoformat(timespec="seconds"),
            row.revoked_at.isoformat(timespec="seconds") if row.revoked_at else "",
        )
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key's id, prefix, name or the key itself")],
) -> None:
    """Revoke keys at once: requests with them get 401 from then on."""
    from powerflow_api.keys import revoke_key
    from powerflow_common.db.engine import make_engine

    settings = command_settings("database")
    engine = make_engine(settings.database_url.get_secret_value())
    try:
        count = revoke_key(engine, key)
    finally:
        engine.dispose()
    if not count:
        console.print("[yellow]no unrevoked key matched[/]")
        raise typer.Exit(1)
    console.print(f"revoked {count} key(s)")


@app.command()
def streams(
    delete: Annotated[bool, typer.Option(help="Delete this namespace's streams")] = False,
) -> None:
    """Create or update the JetStream streams, migrate old ones, show sizes and consumer lag.

    A stream of an older powerflow with another retention is migrated: sealed, its
    unconsumed messages parked and copied back into the new stream (docs/operations.md).
    """
    from powerflow_common.jetstream import (
        connect_nats,
        delete_streams,
        ensure_streams,
        migrate_streams,
        retention_name,
        stream_problems,
    )

    settings = command_settings("nats")

    async def show() -> None:
        nc = await connect_nats(settings, name="powerflow-cli")
        js = nc.jetstream(timeout=settings.nats_timeout_s)
        if delete:
            await delete_streams(js, settings)
            console.print("streams deleted")
            await nc.close()
            return
        for done in await migrate_streams(js, settings):
            console.print(f"[yellow]{done}[/]")
        await ensure_streams(js, settings)
        table = Table(
            "stream",
            "retention",
            "messages",
            "bytes",
            "limit",
            "first",
            "last",
            "consumer",
            "pending",
            "unacked",
        )
        for name in (
            settings.names.readings_stream,
            settings.names.rejected_stream,
            settings.names.persisted_stream,
            settings.names.rollups_stream,  # alerts: the alerts consumer's lag
        ):
            info = await js.stream_info(name)
            state = info.state
            consumers = await js.consumers_info(name)
            row = [
                name,
                retention_name(info.config.retention),
                str(state.messages),
                str(state.bytes),
                str(info.config.max_bytes),
                str(state.first_seq),
                str(state.last_seq),
            ]
            if not consumers:
                table.add_row(*row, "-", "-", "-")
            for ci in consumers:
                table.add_row(*row, ci.name, str(ci.num_pending), str(ci.num_ack_pending))
        Console().print(table)
        for problem in await stream_problems(js, settings):
            console.print(f"[red]{problem}[/]")
        await nc.close()

    asyncio.run(show())


@app.command()
def simulate(
    devices: Annotated[int, typer.Option(help="How many simulated devices")] = 20,
    interval: Annotated[float, typer.Option(help="Seconds between one device's readings")] = 5.0,
    count: Annotated[int | None, typer.Option(help="Readings per device, then stop")] = None,
    duration: Annotated[float | None, typer.Option(help="Seconds to run, then stop")] = None,
    rate: Annotated[
        float | None,
        typer.Option(help="Publish back-dated readings as fast as this many per second"),
    ] = None,
    per_device_topic: Annotated[bool, typer.Option(help="Use power/<device>/measurement")] = False,
    seed: Annotated[int, typer.Option(help="Random seed (device codes stay sim-0001...)")] = 7,
    enroll: Annotated[
        bool,
        typer.Option(
            help="Enrol sim-0001.. first (new passwords; needs POWERFLOW_BROKER_ADMIN_URL) and "
            "publish as each of them"
        ),
    ] = False,
    credentials: Annotated[
        str | None,
        typer.Option(
            help="A file (or - for stdin) of `powerflow devices enroll --json` lines: the "
            "fleet is those devices, each publishing with its own account"
        ),
    ] = None,
) -> None:
    """Publish a realistic simulated fleet in the original device format (MQTT QoS 1).

    On the closed broker give it devices' accounts (--enroll or --credentials); without
    them it publishes with the account in POWERFLOW_MQTT_URL (an open lab broker).
    """
    import sys

    from powerflow.simulate import (
        enroll_fleet,
        fleet_codes,
        read_logins,
        refuse_ingest_account,
        run_fleet,
    )
    from powerflow_common.errors import PowerflowError

    settings = command_settings("mqtt", *(("database",) if enroll else ()))
    if enroll and credentials is not None:
        console.print("[red]--enroll and --credentials exclude each other[/]")
        raise typer.Exit(2)
    logins = None
    try:
        if credentials == "-":
            logins = read_logins(sys.stdin)
        elif credentials is not None:
            with Path(credentials).open() as lines:
                logins = read_logins(lines)
        elif enroll:
            logins = enroll_fleet(settings, fleet_codes(devices), by="powerflow simulate")
        else:
            refuse_ingest_account(settings.mqtt_login_url)
    except (OSError, ValueError, PowerflowError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    try:
        sent = run_fleet(
            settings.mqtt_login_url,
            devices=devices,
            interval_s=interval,
            count=count,
            duration_s=duration,
            rate=rate,
            per_device_topic=per_device_topic,
            seed=seed,
            logins=logins,
            ca_file=settings.mqtt_ca_file,
        )
    except ConnectionError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    console.print(f"published {sent} readings")


@app.command()
def up(
    devices: Annotated[int, typer.Option(help="Simulated devices (0 for none)")] = 20,
    mqtt_port: Annotated[int, typer.Option(help="Port for the project's broker")] = 1883,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="The data folder (default: POWERFLOW_DATA_DIR, else ./var)"),
    ] = None,
) -> None:
    """Everything on one machine: embedded engines where no URL is set, every worker, a fleet."""
    from powerflow.up import run_all

    overrides = {} if data_dir is None else {"data_dir": data_dir}
    settings = command_settings(**overrides)
    raise typer.Exit(run_all(settings, devices=devices, mqtt_port=mqtt_port))


if __name__ == "__main__":
    app()
