"""Tariffs (versions, add-ons), a site's tariff, and a site's cost, bill and forecast."""

from __future__ import annotations

import re
from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import msgspec
from litestar import Controller, Request, get, post, put
from litestar.params import JSONBody, Parameter, PathParameter
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from powerflow_api import schemas
from powerflow_api.auth import principal_of, requires
from powerflow_api.problems import ApiError
from powerflow_api.readings import as_utc
from powerflow_api.state import api_state
from powerflow_api.stats import default_range, resolve_scope
from powerflow_common import costs
from powerflow_common.bounds import MAX_ROW_ID, MIN_ROW_ID, utc_in_bounds
from powerflow_common.db.dialect import begin_write
from powerflow_common.db.models import SITES, TARIFF_COMPONENTS, TARIFFS
from powerflow_common.periods import period_bounds_utc
from powerflow_common.tariffs import Bill, CostBreakdown, Forecast, TariffError, TariffNotFound

Req = Request[Any, Any, Any]
SiteId = Annotated[int, PathParameter(description="The site id", ge=MIN_ROW_ID, le=MAX_ROW_ID)]
EARLIEST_YEAR, LATEST_YEAR = 1970, 2199

COST_NOTE = (
    "Exact energy charges by time band plus per-kWh add-ons, fund and VAT, unrounded; the "
    "demand (basic) charge and fixed charges are monthly and appear on the bill. kWh are the "
    "statistics' energy_kwh + unallocated_kwh of the site's counted devices."
)


def _tariff_error(exc: TariffError) -> ApiError:
    return ApiError(
        status_code=422, detail=exc.detail, extra=[{"key": exc.reason, "message": exc.detail}]
    )


def _problem(exc: Exception) -> ApiError:
    if isinstance(exc, (costs.NoTariff, TariffNotFound)):
        return ApiError(status_code=404, detail=str(exc))
    if isinstance(exc, TariffError):
        return _tariff_error(exc)
    return ApiError(status_code=422, detail=str(exc))


def _version(t: Any) -> schemas.TariffVersion:
    tariff = costs.to_tariff(t)
    return schemas.TariffVersion(
        id=tariff.id,
        name=tariff.name,
        label=tariff.label,
        valid_from=tariff.valid_from,
        valid_to=tariff.valid_to,
        currency=tariff.definition.currency,
        source=tariff.source,
        definition=msgspec.to_builtins(tariff.definition),
    )


def _check_dates(valid_from: date, valid_to: date | None) -> None:
    if not EARLIEST_YEAR <= valid_from.year <= LATEST_YEAR:
        raise ApiError(status_code=422, detail=f"valid_from must lie in {EARLIEST_YEAR}..2199.")
    if valid_to is not None and valid_to <= valid_from:
        raise ApiError(status_code=422, detail="valid_to must be after valid_from.")


class TariffController(Controller):
    path = "/tariffs"
    tags = ["tariffs"]  # noqa: RUF012 (Litestar reads it as a class attribute)

    @get("/", guards=[requires("viewer")], sync_to_thread=True)
    def list_tariffs(self, request: Req) -> list[schemas.TariffVersion]:
        """Every version of every tariff, by name and valid_from (a bounded, curated table)."""
        with api_state(request).engine.connect() as conn:
            rows = conn.execute(select(TARIFFS).order_by(TARIFFS.c.name, TARIFFS.c.valid_from))
            return [_version(r) for r in rows]

    @post("/", guards=[requires("admin")], sync_to_thread=True)
    def create_version(
        self, request: Req, data: JSONBody[schemas.TariffCreate]
    ) -> schemas.TariffVersion:
        """Add a version of a tariff (admin); the latest valid_from on a day wins."""
        _check_dates(data.valid_from, data.valid_to)
        try:
            definition = costs.validate_new_tariff(data.definition)
        except TariffError as exc:
            raise _tariff_error(exc) from exc
        try:
            with begin_write(api_state(request).engine) as conn:
                others = {t.definition.currency for t in costs.load_tariffs(conn, data.name)}
                if others - {definition.currency}:
                    raise ApiError(
                        status_code=422,
                        detail=f"Tariff {data.name!r} is priced in {sorted(others)}: a version "
                        f"in {definition.currency} needs a tariff name of its own.",
                    )
                result = conn.execute(
                    TARIFFS.insert().values(
                        name=data.name,
                        label=data.label,
                        valid_from=data.valid_from,
                        valid_to=data.valid_to,
                        currency=definition.currency,
                        definition=msgspec.to_builtins(definition),
                        source=data.source,
                        created_at=datetime.now(UTC),
                    )
                )
                new_id = int(result.inserted_primary_key[0])  # type: ignore[index]
                row = conn.execute(select(TARIFFS).where(TARIFFS.c.id == new_id)).one()
                return _version(row)
        except IntegrityError as exc:
            raise ApiError(
                status_code=409,
                detail=f"Tariff {data.name!r} has a version from {data.valid_from} already.",
            ) from exc

    @get("/components", guards=[requires("viewer")], sync_to_thread=True)
    def list_components(self, request: Req) -> list[schemas.TariffComponentOut]:
        """Every add-on version (climate, fuel adjustment, fund, VAT ...)."""
        with api_state(request).engine.connect() as conn:
            return [
                schemas.TariffComponentOut(**msgspec.structs.asdict(c))
                for c in costs.load_components(conn)
            ]

    @post("/components", guards=[requires("admin")], sync_to_thread=True)
    def create_component(
        self, request: Req, data: JSONBody[schemas.TariffComponentCreate]
    ) -> schemas.TariffComponentOut:
        """Add a version of an add-on (admin), e.g. next quarter's fuel-cost adjustment."""
        _check_dates(data.valid_from, data.valid_to)
        values = msgspec.structs.asdict(data)
        try:
            with begin_write(api_state(request).engine) as conn:
                result = conn.execute(TARIFF_COMPONENTS.insert().values(**values))
                new_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        except IntegrityError as exc:
            raise ApiError(
                status_code=409,
                detail=f"{data.component_set}/{data.name} has a version from "
                f"{data.valid_from} already.",
            ) from exc
        return schemas.TariffComponentOut(id=new_id, **values)


def _site_exists(conn: Any, site_id: int) -> None:
    if conn.execute(select(SITES.c.id).where(SITES.c.id == site_id)).first() is None:
        raise ApiError(status_code=404, detail=f"No site with id {site_id}.")


class SiteTariffController(Controller):
    path = "/sites/{site_id:int}/tariff"
    tags = ["tariffs"]  # noqa: RUF012

    @get("/", guards=[requires("viewer")], sync_to_thread=True)
    def history(self, request: Req, site_id: SiteId) -> list[schemas.SiteTariffOut]:
        """The site's tariffs and contract powers, month by month (oldest first)."""
        with api_state(request).engine.connect() as conn:
            _site_exists(conn, site_id)
            rows = costs.site_tariff_history(conn, site_id)
        return [schemas.SiteTariffOut(**asdict(r)) for r in rows]

    @put("/", guards=[requires("operator")], sync_to_thread=True)
    def assign(
        self, request: Req, site_id: SiteId, data: JSONBody[schemas.SiteTariffAssign]
    ) -> schemas.SiteTariffOut:
        """Put the site on a tariff with a contract power from a month's first day (operator)."""
        _check_dates(data.valid_from, None)
        try:
            with begin_write(api_state(request).engine) as conn:
                _site_exists(conn, site_id)
                row = costs.assign_site_tariff(
                    conn,
                    site_id,
                    data.tariff_name,
                    data.contract_power_kw,
                    data.valid_from,
                    by=principal_of(request).name,
                )
        except (costs.CostError, costs.NoTariff) as exc:
            raise _problem(exc) from exc
        return schemas.SiteTariffOut(**asdict(row))


def _lines(c: CostBreakdown) -> schemas.CostLines:
    return schemas.CostLines(
        kwh=c.kwh,
        kwh_by_band=c.kwh_by_band,
        energy_by_band=c.energy_by_band,
        energy=c.energy,
        addons=c.addons,
        subtotal=c.subtotal,
        fund=c.fund,
        vat=c.vat,
        total=c.total,
    )


def bill_out(site_id: int, bill: Bill) -> schemas.BillOut:
    d = bill.demand
    demand = None
    if d is not None:
        demand = schemas.BilledDemandOut(
            kw=d.kw,
            basis=d.basis,
            floor_kw=d.floor_kw,
            evidence_month=None
            if d.evidence is None
            else f"{d.evidence.year:04d}-{d.evidence.month:02d}",
            evidence_kw=None if d.evidence is None else d.evidence.kw,
            evidence_quarter_start=None if d.evidence is None else d.evidence.quarter_start,
            current_month_peak_kw=None if d.current_month_peak is None else d.current_month_peak.kw,
            current_month_peak_quarter_start=(
                None if d.current_month_peak is None else d.current_month_peak.quarter_start
            ),
        )
    return schemas.BillOut(
        site_id=site_id,
        month=f"{bill.year:04d}-{bill.month:02d}",
        start=bill.start,
        end=bill.end,
        complete=bill.complete,
        currency=bill.currency,
        tariff_name=bill.tariff.name,
        tariff_label=bill.tariff.label,
        tariff_valid_from=bill.tariff.valid_from,
        tariff_source=bill.tariff.source,
        contract_power_kw=bill.contract_kw,
        demand=demand,
        demand_charge=bill.demand_charge,
        energy=_lines(bill.energy),
        energy_charge=bill.energy_charge,
        addons=bill.addons,
        fixed_charge=bill.fixed_charge,
        electricity_charge=bill.electricity_charge,
        fund=bill.fund,
        vat=bill.vat,
        total=bill.total,
        rounding=bill.rounding,
    )


def forecast_out(site_id: int, f: Forecast) -> schemas.ForecastOut:
    return schemas.ForecastOut(
        bill=bill_out(site_id, f.bill),
        method=f.method,
        days_elapsed=f.days_elapsed,
        days_remaining=f.days_remaining,
        projected_kwh=f.projected_kwh,
    )


MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def _month(value: str) -> tuple[int, int]:
    match = MONTH.match(value)
    if match is None:
        raise ApiError(status_code=400, detail=f"month {value[:16]!r} is not YYYY-MM.")
    year, month = int(match[1]), int(match[2])
    if not EARLIEST_YEAR <= year <= LATEST_YEAR:
        raise ApiError(status_code=400, detail=f"month must lie in {EARLIEST_YEAR}..2199.")
    return year, month


PERIOD = Parameter(default="day", description="hour, day, week or month, in the site's timezone")
START = Parameter(default=None, description="Range start (ISO 8601); default depends on period")
END = Parameter(default=None, description="Range end, exclusive (ISO 8601); default: now")
AT = Parameter(default=None, description="As of this instant (ISO 8601); default: now")


class CostController(Controller):
    path = "/cost/sites/{site_id:int}"
    tags = ["tariffs"]  # noqa: RUF012
    guards = [requires("viewer")]  # noqa: RUF012

    @get("/", sync_to_thread=True)
    def series(
        self,
        request: Req,
        site_id: SiteId,
        period: schemas.StatsPeriod = PERIOD,
        start: datetime | None = START,
        end: datetime | None = END,
    ) -> schemas.CostSeries:
        """The site's energy cost per period, by time band and add-on (exact, unrounded)."""
        state = api_state(request)
        lo, hi = default_range(
            period, as_utc(start, "start") if start else None, as_utc(end, "end") if end else None
        )
        with state.engine.connect() as conn:
            scope = resolve_scope(conn, state.settings, "site", str(site_id))
            try:
                currency, buckets, uncosted = costs.site_cost(conn, scope.totals, period, lo, hi)
            except (costs.CostError, costs.NoTariff, TariffError, TariffNotFound) as exc:
                raise _problem(exc) from exc
        parts = [b.cost for b in buckets if b.cost is not None]
        totals = costs.merge(parts) if parts else None
        zone = ZoneInfo(scope.timezone)
        return schemas.CostSeries(
            site_id=site_id,
            period=period,
            timezone=scope.timezone,
            currency=currency,
            start=lo,
            end=hi,
            uncosted_kwh=uncosted,
            totals=None if totals is None else _lines(totals),
            buckets=[
                schemas.CostBucketOut(
                    b.start.astimezone(zone),
                    b.end.astimezone(zone),
                    b.energy_kwh,
                    None if b.cost is None else _lines(b.cost),
                )
                for b in buckets
            ],
            note=COST_NOTE,
        )

    @get("/bill", sync_to_thread=True)
    def bill(
        self,
        request: Req,
        site_id: SiteId,
        month: Annotated[
            str, Parameter(description="YYYY-MM, the site's local month", max_length=16)
        ],
        at: datetime | None = AT,
    ) -> schemas.BillOut:
        """The month's bill (so far, if not over), with the evidence of its billed demand."""
        state = api_state(request)
        year, mo = _month(month)
        now = utc_in_bounds("at", as_utc(at, "at")) if at else datetime.now(UTC)
        with state.engine.connect() as conn:
            scope = resolve_scope(conn, state.settings, "site", str(site_id))
            try:
                bill = costs.site_bill(conn, scope.totals, year, mo, until=now)
            except (costs.CostError, costs.NoTariff, TariffError, TariffNotFound) as exc:
                raise _problem(exc) from exc
        return bill_out(site_id, bill)

    @get("/forecast", sync_to_thread=True)
    def forecast(
        self, request: Req, site_id: SiteId, at: datetime | None = AT
    ) -> schemas.ForecastOut:
        """This month's bill projected to its end, and the method."""
        state = api_state(request)
        now = utc_in_bounds("at", as_utc(at, "at")) if at else datetime.now(UTC)
        with state.engine.connect() as conn:
            scope = resolve_scope(conn, state.settings, "site", str(site_id))
            try:
                result = costs.site_forecast(conn, scope.totals, now)
            except (costs.CostError, costs.NoTariff, TariffError, TariffNotFound) as exc:
                raise _problem(exc) from exc
        return forecast_out(site_id, result)

    @get("/summary", sync_to_thread=True)
    def summary(
        self, request: Req, site_id: SiteId, at: datetime | None = AT
    ) -> schemas.CostSummary:
        """Today's cost, this month's bill so far and the forecast to the month's end."""
        state = api_state(request)
        now = utc_in_bounds("at", as_utc(at, "at")) if at else datetime.now(UTC)
        with state.engine.connect() as conn:
            scope = resolve_scope(conn, state.settings, "site", str(site_id))
            tz = scope.timezone
            day_start, _ = period_bounds_utc("day", now, tz)
            try:
                currency, today, _ = costs.site_cost(conn, scope.totals, "day", day_start, now)
                forecast = costs.site_forecast(conn, scope.totals, now)
                local_month = forecast.bill.year, forecast.bill.month
                so_far = costs.site_bill(conn, scope.totals, *local_month, until=now)
            except (costs.CostError, costs.NoTariff, TariffError, TariffNotFound) as exc:
                raise _problem(exc) from exc
        parts = [b.cost for b in today if b.cost is not None]
        today_cost = costs.merge(parts) if parts else CostBreakdown(currency=so_far.currency)
        return schemas.CostSummary(
            site_id=site_id,
            currency=currency or so_far.currency,
            timezone=tz,
            today=_lines(today_cost),
            month_so_far=bill_out(site_id, so_far),
            forecast=forecast_out(site_id, forecast),
        )
