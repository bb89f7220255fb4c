"""Outdoor series, baselines and savings: ``weather import|outdoor``, ``baseline fit|savings``.

The same functions as the API (powerflow_common.savings); docs/architecture.md, "Baselines
and savings", says what they compute.
"""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from powerflow.cli_settings import command_settings

console = Console(stderr=True)
weather_app = typer.Typer(help="A site's outdoor temperature: weather CSV, outdoor devices.")
baseline_app = typer.Typer(help="Fit a site's baseline; savings against it (ASHRAE G14).")

Site = Annotated[int, typer.Option("--site", help="The site id")]


def _fail(reason: str, detail: str) -> typer.Exit:
    console.print(f"[red]{reason}[/]: {detail}")
    return typer.Exit(1)


@weather_app.command("import")
def weather_import(
    file: Annotated[Path, typer.Argument(help="A KMA ASOS CSV (daily or hourly)", exists=True)],
    site: Site,
    station: Annotated[str | None, typer.Option(help="Station number, if several")] = None,
) -> None:
    """Import a KMA ASOS CSV's daily mean temperatures as the site's outdoor series."""
    from powerflow_common.db.dialect import begin_write
    from powerflow_common.db.engine import make_engine
    from powerflow_common.queries import ScopeNotFound
    from powerflow_common.savings import import_weather, site_timezone
    from powerflow_common.weather import WeatherRejected, parse_kma_asos_csv

    settings = command_settings("database")
    size = file.stat().st_size
    if size > settings.weather_import_max_bytes:
        raise _fail(
            "too_large",
            f"{file} has {size} bytes; at most {settings.weather_import_max_bytes} "
            "(POWERFLOW_WEATHER_IMPORT_MAX_BYTES): split it by years.",
        )
    engine = make_engine(settings.database_url.get_secret_value())
    try:
        with begin_write(engine) as conn:
            tz = site_timezone(conn, site)
            days = parse_kma_asos_csv(file.read_bytes(), site_timezone=tz, station=station)
            n = import_weather(conn, site, days)
    except WeatherRejected as exc:
        raise _fail(exc.reason, exc.detail) from None
    except ScopeNotFound as exc:
        raise _fail("unknown_site", str(exc)) from None
    finally:
        engine.dispose()
    span = f"{days[0].day} .. {days[-1].day}" if days else "no whole day"
    console.print(f"site {site}: {n} days of station {days[0].station if days else '-'} ({span})")


@weather_app.command("outdoor")
def weather_outdoor(
    code: Annotated[str, typer.Argument(help="The device code")],
    off: Annotated[bool, typer.Option("--off", help="Unmark it")] = False,
) -> None:
    """Mark a device outdoor: its temperature readings become its site's outdoor series."""
    from powerflow_common.db.dialect import begin_write
    from powerflow_common.db.engine import make_engine
    from powerflow_common.queries import ScopeNotFound
    from powerflow_common.savings import mark_outdoor

    settings = command_settings("database")
    engine = make_engine(settings.database_url.get_secret_value())
    try:
        with begin_write(engine) as conn:
            changed = mark_outdoor(conn, code, outdoor=not off, by="cli")
    except ScopeNotFound as exc:
        raise _fail("unknown_device", str(exc)) from None
    finally:
        engine.dispose()
    state = "outdoor" if not off else "not outdoor"
    console.print(f"{code}: {state}" + ("" if changed else " (unchanged)"))


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not a date (YYYY-MM-DD)") from exc


@baseline_app.command("fit")
def baseline_fit(
    site: Site,
    start: Annotated[str, typer.Option("--from", help="First local day (YYYY-MM-DD)")],
    end: Annotated[str, typer.Option("--to", help="Last local day, inclusive")],
    source: Annotated[
        str | None, typer.Option(help="device or weather (default: more days)")
    ] = None,
) -> None:
    """Fit and store the site's baseline on a period; prints the model as JSON."""
    from powerflow_common.baselines import BaselineRefused
    from powerflow_common.db.engine import make_engine
    from powerflow_common.queries import ScopeNotFound
    from powerflow_common.savings import TEMPERATURE_SOURCES, DayRange, fit_site_baseline

    if source is not None and source not in TEMPERATURE_SOURCES:
        raise typer.BadParameter("--source is device or weather")
    settings = command_settings("database")
    engine = make_engine(settings.database_url.get_secret_value())
    try:
        stored = fit_site_baseline(
            engine,
            settings,
            site,
            DayRange(_day(start), _day(end)),
            source=source,  # checked above
            by="cli",
        )
    except BaselineRefused as exc:
        raise _fail(exc.reason, exc.detail) from None
    except ScopeNotFound as exc:
        raise _fail("not_found", str(exc)) from None
    finally:
        engine.dispose()
    m, s = stored.model, stored.model.stats
    print(
        json.dumps(
            {
                "baseline_id": stored.id,
                "model_kind": m.kind,
                "temperature_source": stored.temperature_source,
                "coefficients": {c.name: [c.value, c.std_error] for c in m.coefficients},
                "heating_change_point_c": m.heating_change_point_c,
                "cooling_change_point_c": m.cooling_change_point_c,
                "cv_rmse_pct": s.cv_rmse_pct,
                "nmbe_pct": s.nmbe_pct,
                "monthly_cv_rmse_pct": s.monthly_cv_rmse_pct,
                "meets_guideline_14": s.meets_guideline_14,
                "sufficiency": m.sufficiency,
            },
            indent=2,
        )
    )


@baseline_app.command("savings")
def baseline_savings(
    site: Site,
    start: Annotated[str, typer.Option("--from", help="First local day (YYYY-MM-DD)")],
    end: Annotated[str, typer.Option("--to", help="Last local day, inclusive")],
    baseline: Annotated[int | None, typer.Option(help="Default: the latest")] = None,
) -> None:
    """Savings against the site's baseline over a period, with their uncertainty."""
    from powerflow_common.baselines import BaselineRefused
    from powerflow_common.db.engine import make_engine
    from powerflow_common.queries import ScopeNotFound
    from powerflow_common.savings import DayRange, site_savings

    settings = command_settings("database")
    engine = make_engine(settings.database_url.get_secret_value())
    try:
        with engine.connect() as conn:
            found = site_savings(
                conn, settings, site, DayRange(_day(start), _day(end)), baseline_id=baseline
            )
    except BaselineRefused as exc:
        raise _fail(exc.reason, exc.detail) from None
    except ScopeNotFound as exc:
        raise _fail("not_found", str(exc)) from None
    finally:
        engine.dispose()
    s = found.savings
    band = "n/a" if not math.isfinite(s.uncertainty_pct) else f"{s.uncertainty_pct:.1f}"
    print(
        f"baseline {found.baseline.id} ({found.baseline.model.kind}): saved "
        f"{s.savings_kwh:.1f} kWh of {s.baseline_kwh:.1f} predicted = {s.savings_pct:.1f} % "
        f"± {band} % at {s.confidence:.0%} over {s.m_reporting} days "
        f"({found.days_missing} missing, {s.extrapolated_days} outside the baseline's range)"
    )
