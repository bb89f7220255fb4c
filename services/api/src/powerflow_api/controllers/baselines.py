"""Baselines and savings of a site; its outdoor temperature series (devices, weather CSV)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Annotated, Any, TypeVar

import anyio
from litestar import Controller, Request, get, post, put
from litestar.exceptions import NotFoundException
from litestar.params import JSONBody, Parameter, PathParameter

from powerflow_api import metrics
from powerflow_api.auth import principal_of, requires
from powerflow_api.controllers.devices import Code
from powerflow_api.controllers.sites import SiteId
from powerflow_api.problems import ApiError
from powerflow_api.savings_schemas import (
    Baseline,
    BaselineFit,
    FitDay,
    OutdoorMark,
    OutdoorMarked,
    OutdoorSeries,
    SavingsOut,
    WeatherImported,
    to_baseline,
    to_savings,
)
from powerflow_api.state import api_state
from powerflow_common.baselines import BaselineRefused
from powerflow_common.bounds import MAX_ROW_ID, MIN_ROW_ID
from powerflow_common.db.dialect import begin_write
from powerflow_common.queries import ScopeNotFound
from powerflow_common.savings import (
    DayRange,
    baseline_days,
    fit_site_baseline,
    import_weather,
    list_baselines,
    load_baseline,
    mark_outdoor,
    outdoor_summary,
    site_savings,
    site_timezone,
)
from powerflow_common.weather import WeatherRejected, parse_kma_asos_csv

Req = Request[Any, Any, Any]
BaselineId = Annotated[
    int, PathParameter(description="The baseline id", ge=MIN_ROW_ID, le=MAX_ROW_ID)
]
LIST_MAX = 50  # baselines listed per site, newest first
T = TypeVar("T")


@contextmanager
def _domain_errors() -> Iterator[None]:
    """Domain refusals as problems: unknown site/device/baseline 404, a refusal 422."""
    try:
        yield
    except ScopeNotFound as exc:
        raise NotFoundException(str(exc)) from exc
    except (BaselineRefused, WeatherRejected) as exc:
        metrics.BASELINE_REFUSALS.labels(exc.reason).inc()
        raise ApiError(
            status_code=422, detail=exc.detail, extra=[{"key": "reason", "message": exc.reason}]
        ) from exc


def _run(call: Callable[[], T]) -> T:
    with _domain_errors():
        return call()


class BaselineController(Controller):
    path = "/"
    tags = ["baselines and savings"]  # noqa: RUF012 (Litestar reads it as a class attribute)

    @post("/sites/{site_id:int}/baselines", guards=[requires("operator")], sync_to_thread=True)
    def fit(self, request: Req, site_id: SiteId, data: JSONBody[BaselineFit]) -> Baseline:
        """Fit and store a baseline on the site's baseline period (422 says why it cannot)."""
        state = api_state(request)
        by = principal_of(request).name

        def fit() -> Baseline:
            stored = fit_site_baseline(
                state.engine,
                state.settings,
                site_id,
                DayRange(data.start, data.end),
                source=data.temperature_source,
                kinds=data.kinds or None,
                by=by,
            )
            metrics.BASELINE_FITS.labels(stored.model.kind).inc()
            return to_baseline(stored)

        return _run(fit)

    @get("/sites/{site_id:int}/baselines", guards=[requires("viewer")], sync_to_thread=True)
    def list_baselines(self, request: Req, site_id: SiteId) -> list[Baseline]:
        """The site's baselines, newest first (at most 50)."""
        state = api_state(request)

        def listed() -> list[Baseline]:
            with state.engine.connect() as conn:
                return [to_baseline(b) for b in list_baselines(conn, site_id, LIST_MAX)]

        return _run(listed)

    @get("/baselines/{baseline_id:int}", guards=[requires("viewer")], sync_to_thread=True)
    def get_baseline(self, request: Req, baseline_id: BaselineId) -> Baseline:
        """One baseline with its days: actual and predicted kWh on outdoor temperature."""
        state = api_state(request)

        def found() -> Baseline:
            with state.engine.connect() as conn:
                stored = load_baseline(conn, baseline_id)
                days = [
                    FitDay(p.day, p.temperature_c, p.energy_kwh, y)
                    for p, y in baseline_days(conn, state.settings, stored)
                ]
            return to_baseline(stored, days)

        return _run(found)

    @get("/sites/{site_id:int}/savings", guards=[requires("viewer")], sync_to_thread=True)
    def savings(
        self,
        request: Req,
        site_id: SiteId,
        start: Annotated[date, Parameter(description="First local day of the reporting period")],
        end: Annotated[date, Parameter(description="Last local day (inclusive)")],
        baseline_id: Annotated[
            int | None,
            Parameter(description="Default: the site's latest", ge=MIN_ROW_ID, le=MAX_ROW_ID),
        ] = None,
    ) -> SavingsOut:
        """Savings = baseline prediction - actual per day, CUSUM, total with its uncertainty."""
        state = api_state(request)

        def computed() -> SavingsOut:
            with state.engine.connect() as conn:
                found = site_savings(
                    conn, state.settings, site_id, DayRange(start, end), baseline_id=baseline_id
                )
            return to_savings(site_id, found)

        return _run(computed)

    @get("/sites/{site_id:int}/outdoor", guards=[requires("viewer")], sync_to_thread=True)
    def outdoor(self, request: Req, site_id: SiteId) -> OutdoorSeries:
        """Where the site's outdoor temperature comes from: outdoor devices, imported days."""
        state = api_state(request)

        def series() -> OutdoorSeries:
            with state.engine.connect() as conn:
                found = outdoor_summary(conn, site_id)
            return OutdoorSeries(
                site_id=site_id,
                devices=found.devices,
                weather_days=found.weather_days,
                weather_first=found.weather_first,
                weather_last=found.weather_last,
                weather_sources=found.weather_sources,
            )

        return _run(series)

    @put("/devices/{code:str}/outdoor", guards=[requires("operator")], sync_to_thread=True)
    def mark(self, request: Req, code: Code, data: JSONBody[OutdoorMark]) -> OutdoorMarked:
        """Mark a device outdoor: its temperature becomes its site's outdoor series."""
        state = api_state(request)
        by = principal_of(request).name

        def marked() -> OutdoorMarked:
            with begin_write(state.engine) as conn:
                changed = mark_outdoor(conn, code, outdoor=data.outdoor, by=by)
            return OutdoorMarked(code=code, outdoor=data.outdoor, changed=changed)

        return _run(marked)

    @post("/sites/{site_id:int}/weather", guards=[requires("operator")])
    async def weather(
        self,
        request: Req,
        site_id: SiteId,
        station: Annotated[
            str | None, Parameter(description="ASOS station number", max_length=16)
        ] = None,
    ) -> WeatherImported:
        """Import a KMA ASOS CSV (daily or hourly; body up to api_max_body_bytes)."""
        state = api_state(request)
        body = await request.body()
        if not body:
            raise ApiError(status_code=422, detail="Send the CSV file as the request body.")

        def imported() -> WeatherImported:
            with begin_write(state.engine) as conn:
                tz = site_timezone(conn, site_id)
                days = parse_kma_asos_csv(body, site_timezone=tz, station=station)
                n = import_weather(conn, site_id, days)
            return WeatherImported(
                site_id=site_id,
                station=days[0].station if days else (station or ""),
                imported_days=n,
                first=days[0].day if days else None,
                last=days[-1].day if days else None,
            )

        return await anyio.to_thread.run_sync(lambda: _run(imported))
