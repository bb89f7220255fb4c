"""``powerflow broker``: the project's Mosquitto in the foreground; ``broker certs``: TLS files."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from powerflow.broker import (
    Broker,
    BrokerSetupError,
    CertPaths,
    ingest_username,
    make_dev_certs,
)
from powerflow_common.broker_admin import ADMIN_USERNAME
from powerflow_common.settings import load_settings

app = typer.Typer(
    invoke_without_command=True,
    help="The project's Mosquitto (closed: accounts only; TLS on 8883); `certs`: TLS files.",
)
console = Console(stderr=True, soft_wrap=True)

DEFAULT_DATA_DIR = Path("var/mosquitto")


@app.callback()
def broker(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="Plain MQTT listener")] = 1883,
    tls_port: Annotated[int, typer.Option(help="MQTT over TLS listener (0: none)")] = 8883,
    data_dir: Annotated[
        Path, typer.Option(help="Store, accounts, secrets/ and certs/")
    ] = DEFAULT_DATA_DIR,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every one)")] = (
        "127.0.0.1"
    ),
    ingest_slots: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="ingest slots to make accounts for (powerflow-ingest-0..K-1; default: "
            "POWERFLOW_INGEST_SLOTS)",
        ),
    ] = None,
    hostname: Annotated[
        list[str] | None,
        typer.Option(help="Names in the development server certificate (when it is made)"),
    ] = None,
    certs_dir: Annotated[
        Path | None,
        typer.Option(help="A real certificate's folder: ca.crt, server.crt, server.key"),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            envvar="POWERFLOW_BROKER_CONFIG",
            help="The configuration template (default: the packaged powerflow/data/mosquitto.conf)",
        ),
    ] = None,
    open_lab: Annotated[
        bool,
        typer.Option(
            "--open",
            help="LAB ONLY: anonymous clients may publish on device topics (never subscribe)",
        ),
    ] = False,
) -> None:
    """Run Mosquitto in the foreground with the project's configuration (Ctrl-C stops it).

    The first start of a data folder makes the admin and ingest accounts (random passwords
    in <data-dir>/secrets/, mode 0600; every ingest slot account has powerflow-ingest-0's);
    without TLS files in <data-dir>/certs/ a development CA and server certificate are made
    there.
    """
    if ctx.invoked_subcommand is not None:
        return
    settings = load_settings()
    slots = ingest_slots or settings.ingest_slots
    instance = Broker(
        port,
        data_dir.resolve(),
        tls_port=tls_port or None,
        host=host,
        ingest_slots=slots,
        namespace=settings.namespace,
        open_lab=open_lab,
        cert_hostnames=hostname or ("localhost",),
        certs_dir=certs_dir.resolve() if certs_dir else None,
        config_template=config,
    )
    try:
        instance.start()
    except BrokerSetupError as exc:
        console.print(f"[red]the broker cannot start[/]: {exc}")
        raise typer.Exit(2) from None
    _print_access(instance, slots, settings.namespace)

    def stop(*_args: object) -> None:
        instance.stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = instance.wait()
    console.print(f"mosquitto stopped ({code}); log: {instance.data_dir / 'mosquitto.log'}")
    raise typer.Exit(0 if code in (0, -signal.SIGTERM) else code)


def _print_access(instance: Broker, slots: int, namespace: str) -> None:
    """Where the broker is and where its credentials are (never the passwords themselves)."""
    host = instance.connect_host
    secrets = instance.secrets_dir
    lines = [
        f"[green]powerflow broker[/] mqtt://{host}:{instance.port}"
        + (f" and mqtts://{host}:{instance.tls_port}" if instance.tls_port else "")
        + f" (data: {instance.data_dir})",
        f"  admin:  POWERFLOW_BROKER_ADMIN_URL=mqtt://{ADMIN_USERNAME}:PASSWORD@{host}:"
        f"{instance.port}  (PASSWORD in {secrets / (ADMIN_USERNAME + '.password')})",
    ]
    user = ingest_username("0", namespace)
    accounts = user if slots == 1 else f"{user} .. {ingest_username(str(slots - 1), namespace)}"
    lines.append(
        f"  ingest ({slots} slot{'s' if slots > 1 else ''}: {accounts}, one password): "
        f"POWERFLOW_MQTT_URL=mqtt://{user}:PASSWORD@{host}:{instance.port} "
        f"POWERFLOW_INGEST_SLOTS={slots}"
        f"  (PASSWORD in {secrets / (user + '.password')}; or POWERFLOW_MQTT_PASSWORD_FILE)"
    )
    if instance.tls_port:
        certs = instance.certs
        made = " [yellow](development CA made now)[/]" if instance.made_certs else ""
        lines.append(f"  TLS: devices pin {certs.ca}{made}")
    console.print("\n".join(lines))
    if instance.open_lab:
        console.print(
            "[bold red]OPEN LAB BROKER[/]: anyone who reaches it may publish readings on device "
            "topics without an account, and any client may take any client id (ingest's too). "
            "Readings of devices nobody enrolled wait for admission. Never in production."
        )


@app.command()
def certs(
    data_dir: Annotated[
        Path, typer.Option(help="The broker's data folder (files go to its certs/)")
    ] = DEFAULT_DATA_DIR,
    hostname: Annotated[
        list[str] | None,
        typer.Option(help="Names devices use to reach the broker (repeatable)"),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace existing certificates")] = False,
) -> None:
    """Make a development CA and server certificate; prints the CA to pin on devices."""
    paths = CertPaths.in_dir(data_dir.resolve())
    if paths.exist() and not force:
        console.print(f"certificates already in {paths.ca.parent} (--force replaces them)")
    else:
        try:
            paths = make_dev_certs(data_dir.resolve(), hostname or ("localhost",))
        except BrokerSetupError as exc:
            console.print(f"[red]no certificates made[/]: {exc}")
            raise typer.Exit(2) from None
        console.print(
            f"development CA and server certificate for {', '.join(hostname or ['localhost'])} "
            f"in {paths.ca.parent} (development only: the CA key is beside it)"
        )
    # stdout: the one path scripts want.
    typer.echo(f"pin this CA on devices: {paths.ca}")
