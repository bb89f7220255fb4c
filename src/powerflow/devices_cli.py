"""``powerflow devices enroll|revoke|list``: who may publish, with which credentials."""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from powerflow.cli_settings import command_settings
from powerflow_common.errors import EnrolmentError, PowerflowError
from powerflow_common.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from powerflow_common.broker_admin import AccountAdmin

devices_app = typer.Typer(
    no_args_is_help=True, help="Devices: enroll (broker credentials, shown once), revoke, list."
)
console = Console(stderr=True)

# Exit codes: what a script can tell apart.
EXIT_REFUSED = 2  # the request itself is wrong (code, format): nothing was changed
EXIT_BROKER = 3  # the broker did not answer or refused; see the message for the state left
EXIT_DATABASE = 4  # the database did not answer or refused; see the message


def _operator() -> str:
    """Who enrolled, as recorded in devices.admitted_by."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in a bare container
        return "cli"


@contextmanager
def _engine(settings: Settings) -> Iterator[Engine]:
    from sqlalchemy.exc import DBAPIError

    from powerflow_common.db.engine import make_engine
    from powerflow_common.settings import redact_url

    url = settings.database_url.get_secret_value()
    engine = make_engine(url)
    try:
        yield engine
    except DBAPIError as exc:  # the database is away or refused: say so, no traceback
        console.print(f"[red]database {redact_url(url)}[/]: {exc.orig}")
        raise typer.Exit(EXIT_DATABASE) from exc
    finally:
        engine.dispose()


@contextmanager
def _admin(settings: Settings) -> Iterator[AccountAdmin]:
    """The broker's admin, connected; exit 3 with the reason when it cannot be."""
    admin = _connect_admin(settings)
    if admin is None:
        raise typer.Exit(EXIT_BROKER)
    try:
        yield admin
    finally:
        admin.close()


def _connect_admin(settings: Settings) -> AccountAdmin | None:
    from powerflow_common.broker_admin import broker_admin

    try:
        admin = broker_admin(settings)
        admin.__enter__()
    except PowerflowError as exc:  # not configured, unreachable, refused
        console.print(f"[red]broker[/]: {exc}")
        return None
    return admin


def _fail(exc: EnrolmentError) -> typer.Exit:
    console.print(f"[red]{exc.reason}[/]: {exc.detail}")
    codes = {"broker_failed": EXIT_BROKER, "database_failed": EXIT_DATABASE}
    return typer.Exit(codes.get(exc.reason, EXIT_REFUSED))


@devices_app.command("enroll")
def enroll_command(
    code: Annotated[str, typer.Argument(help="The device code (a MAC address, number or name)")],
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            help="Payload format(s) it publishes: original (default), tasmota, shelly, "
            "esphome, emonhub; repeat for several",
        ),
    ] = None,
    legacy: Annotated[
        bool,
        typer.Option(help="Also allow the shared power/measurement (unprovable: docs/devices.md)"),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Create or update a device and give it its own broker credentials, printed once.

    Enrolling again rotates the password: the old one stops working at once.
    """
    from powerflow_common.device_setup import DeviceBroker, enrolment_json, setup_texts
    from powerflow_common.enrolment import enroll_device, enrolment_code, payload_formats

    settings = command_settings("database")
    names = formats or ["original"]
    try:  # refuse a bad request before touching anything
        enrolment_code(code)
        payload_formats(names)
    except EnrolmentError as exc:
        raise _fail(exc) from exc
    ignored = [n for n in names if n not in settings.formats]
    if ignored:
        console.print(
            f"[yellow]ingest does not decode {', '.join(ignored)} (POWERFLOW_FORMATS): "
            "enable it or these readings are ignored[/]"
        )
    with _engine(settings) as engine, _admin(settings) as admin:
        try:
            enrolment = enroll_device(
                engine, admin, code, formats=names, legacy=legacy, by=_operator()
            )
        except EnrolmentError as exc:
            raise _fail(exc) from exc
    broker = DeviceBroker.from_settings(settings)
    # The password goes to stdout only, never to a log.
    if as_json:
        print(json.dumps(enrolment_json(enrolment, broker)))
        return
    what = "enrolled" if enrolment.created else "enrolled again (the old password no longer works)"
    console.print(f"[green]{enrolment.code}[/] {what}. The password is shown only now.")
    tls = f" (TLS: {broker.host}:{broker.tls_port})" if broker.tls_port else ""
    print(f"username and client id: {enrolment.username}")
    print(f"password:               {enrolment.password}")
    print(f"broker:                 {broker.host}:{broker.port}{tls}")
    print(f"may publish to:         {', '.join(enrolment.topics)}")
    for title, text in setup_texts(enrolment, broker):
        print(f"\n# {title}\n{text}")


@devices_app.command("revoke")
def revoke_command(
    code: Annotated[str, typer.Argument(help="The device code")],
) -> None:
    """Remove a device's broker access at once (a connected device is disconnected).

    Its stored readings stay and keep counting; enroll it again to give it new credentials.
    """
    from powerflow_common.enrolment import revoke_device

    settings = command_settings("database")
    with _engine(settings) as engine, _admin(settings) as admin:
        try:
            done = revoke_device(engine, admin, code)
        except EnrolmentError as exc:
            raise _fail(exc) from exc
    account = "its broker account removed" if done.account_removed else "it had no broker account"
    console.print(f"[green]{done.code}[/] revoked: {account}")


@devices_app.command("list")
def list_command(
    after: Annotated[str | None, typer.Option(help="Start after this code (paging)")] = None,
    limit: Annotated[int, typer.Option(help="Devices per page (at most 10,000)")] = 500,
    broker: Annotated[
        bool, typer.Option(help="Check each device against the broker's accounts")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
) -> None:
    """Devices with their enrolment state, admission, legacy topic and last reading."""
    from powerflow_common.enrolment import EnrolmentListing, list_enrolments

    settings = command_settings("database")
    listing: EnrolmentListing
    admin = None
    if broker and settings.broker_admin_url is not None:
        admin = _connect_admin(settings)
        if admin is None:
            console.print("[yellow]listing the database only: states are not checked[/]")
    with _engine(settings) as engine:
        try:
            listing = list_enrolments(engine, admin, after=after, limit=limit)
        except EnrolmentError as exc:
            raise _fail(exc) from exc
        finally:
            if admin is not None:
                admin.close()
    if as_json:
        for device in listing.devices:
            print(
                json.dumps(
                    {
                        "code": device.code,
                        "state": device.state,
                        "enrolled_at": _iso(device.enrolled_at),
                        "revoked_at": _iso(device.revoked_at),
                        "admitted_at": _iso(device.admitted_at),
                        "legacy": device.legacy,
                        "format": device.payload_format,
                        "last_seen_at": _iso(device.last_seen_at),
                        "has_account": device.has_account,
                    }
                )
            )
    else:
        table = Table("code", "state", "admitted", "legacy", "format", "last seen")
        for device in listing.devices:
            table.add_row(
                device.code,
                device.state,
                _iso(device.admitted_at) or "no (waiting)",
                "yes" if device.legacy else "",
                device.payload_format,
                _iso(device.last_seen_at),
            )
        Console().print(table)
    for username in listing.unexplained_accounts:
        console.print(
            f"[red]broker account {username} belongs to no enrolled device[/]: "
            f"`powerflow devices revoke {username.removeprefix('device-')}` removes it"
        )
    if len(listing.devices) == limit:
        console.print(f"more devices: --after {listing.devices[-1].code}")


def _iso(value: object) -> str | None:
    from datetime import datetime

    return value.isoformat(timespec="seconds") if isinstance(value, datetime) else None
