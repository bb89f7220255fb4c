"""Statistics per device, site or organisation, the overview summary, and their CSV export."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.params import FromPath, Parameter, QueryParameter
from litestar.response import Stream

from powerflow_api import schemas
from powerflow_api.auth import requires
from powerflow_api.problems import ApiError
from powerflow_api.readings import as_utc
from powerflow_api.state import ApiState, api_state
from powerflow_api.stats import (
    ScopeKind,
    default_range,
    resolve_scope,
    series,
    summary,
)
from powerflow_common import costs
from powerflow_common.periods import Period, period_bounds_utc
from powerflow_common.tariffs import TariffError, TariffNotFound

Req = Request[Any, Any, Any]

PERIOD = Parameter(
    default="day", description="hour, day, week (from Monday) or month, in the scope's timezone"
)
START = Parameter(default=None, description="Range start (ISO 8601); default depends on period")
END = Parameter(default=None, description="Range end, exclusive (ISO 8601); default: now")

SCOPE = QueryParameter(name="scope", description="What to total")
REF = Parameter(default=None, description="The device code (scope=device) or site id (scope=site)")
SITE = Parameter(default=None, description="A site; default: everything")
AT = Parameter(
    default=None,
    description="As of this instant (ISO 8601): today and this month up to it; default: now",
)

BUCKET_FIELDS = tuple(schemas.StatsBucket.__struct_fields__)


def _series(
    state: ApiState,
    kind: ScopeKind,
    ref: str | None,
    period: schemas.StatsPeriod,
    start: datetime | None,
    end: datetime | None,
) -> schemas.StatsSeries:
    lo, hi = default_range(
        period, as_utc(start, "start") if start else None, as_utc(end, "end") if end else None
    )
    with state.engine.connect() as conn:
        scope = resolve_scope(conn, state.settings, kind, ref)
        return series(conn, state.settings, scope, period, lo, hi)


class StatsController(Controller):
    path = "/stats"
    tags = ["statistics"]  # noqa: RUF012 (Litestar reads it as a class attribute)
    guards = [requires("viewer")]  # noqa: RUF012

    @get("/devices/{code:str}", sync_to_thread=True)
    def device(
        self,
        request: Req,
        code: FromPath[str],
        period: schemas.StatsPeriod = PERIOD,
        start: datetime | None = START,
        end: datetime | None = END,
    ) -> schemas.StatsSeries:
        """One device's energy, CO2, power and environment per period."""
        return _series(api_state(request), "device", code, period, start, end)

    @get("/sites/{site_id:int}", sync_to_thread=True)
    def site(
        self,
        request: Req,
        site_id: FromPath[int],
        period: schemas.StatsPeriod = PERIOD,
        start: datetime | None = START,
        end: datetime | None = END,
    ) -> schemas.StatsSeries:
        """A site's totals per period (main meters, or standalone ones; never sub-meters)."""
        return _series(api_state(request), "site", str(site_id), period, start, end)

    @get("/organisation", sync_to_thread=True)
    def organisation(
        self,
        request: Req,
        period: schemas.StatsPeriod = PERIOD,
        start: datetime | None = START,
        end: datetime | None = END,
    ) -> schemas.StatsSeries:
        """Every site's totals together, per period in the organisation's timezone."""
        return _series(api_state(request), "organisation", None, period, start, end)

    @get("/summary", sync_to_thread=True)
    def summary(
        self,
        request: Req,
        site_id: int | None = SITE,
        at: datetime | None = AT,
    ) -> schemas.Summary:
        """The overview: power now, today and this month versus the previous period."""
        state = api_state(request)
        kind: ScopeKind = "organisation" if site_id is None else "site"
        with state.engine.connect() as conn:
            scope = resolve_scope(
                conn, state.settings, kind, None if site_id is None else str(site_id)
            )
            as_of = None if at is None else as_utc(at, "at")
            return summary(conn, state.settings, scope, as_of)

    @get("/export", sync_to_thread=True, media_type="text/csv")
    def export(
        self,
        request: Req,
        kind: Annotated[ScopeKind, SCOPE] = "organisation",
        ref: str | None = REF,
        period: schemas.StatsPeriod = PERIOD,
        start: datetime | None = START,
        end: datetime | None = END,
    ) -> Stream:
        """A statistics series as CSV (one row per period), streamed."""
        if kind != "organisation" and not ref:
            raise ApiError(status_code=400, detail=f"scope={kind} needs ref (a code or site id).")
        if kind == "site" and not (ref or "").isdigit():
            raise ApiError(status_code=400, detail="scope=site needs ref=<site id>, a number.")
        state = api_state(request)
        data = _series(state, kind, ref, period, start, end)
        cost = _cost_columns(state, data) if kind == "site" else {}
        return Stream(
            _csv(data, cost),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="stats-{kind}-{period}.csv"'},
        )


def _csv(data: schemas.StatsSeries, cost: dict[datetime, list[Any]] | None = None) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    factors = "; ".join(
        f"{f.factor_set}/{f.region} {f.kg_co2e_per_kwh} ({f.source})" for f in data.factors
    )
    writer.writerow([*BUCKET_FIELDS, "timezone", "factors", *(COST_FIELDS if cost else ())])
    for b in data.buckets:
        cells = [getattr(b, f) for f in BUCKET_FIELDS]
        writer.writerow(
            [
                *(
                    "" if c is None else c.isoformat() if isinstance(c, datetime) else c
                    for c in cells
                ),
                data.timezone,
                factors,
                *((cost.get(b.start.astimezone(UTC)) or [""] * len(COST_FIELDS)) if cost else ()),
            ]
        )
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


# --- Tariffs and cost: a site's CSV gains its cost (powerflow_common.costs) ---------------------

# Exact energy-related cost of each bucket in the tariff's currency (the bill, with demand
# and fixed charges and KEPCO's rounding, is GET /api/v1/cost/sites/{id}/bill).
COST_FIELDS = (
    "cost_currency",
    "cost_energy",
    "cost_addons",
    "cost_fund",
    "cost_vat",
    "cost_total",
)


def _cost_columns(state: ApiState, data: schemas.StatsSeries) -> dict[datetime, list[Any]]:
    """Cost cells by bucket (UTC start of its local period); empty when the site has no tariff."""
    period: Period = data.period
    with state.engine.connect() as conn:
        scope = resolve_scope(conn, state.settings, "site", data.scope_ref)
        try:
            currency, buckets, _ = costs.site_cost(conn, scope.totals, period, data.start, data.end)
        except (costs.NoTariff, TariffNotFound):
            return {}
        except (costs.CostError, TariffError) as exc:
            raise ApiError(status_code=422, detail=str(exc)) from exc
    out: dict[datetime, list[Any]] = {}
    for b in buckets:
        if b.cost is None:
            continue
        key = period_bounds_utc(period, b.start, data.timezone)[0]
        c = b.cost
        out[key] = [currency, c.energy, sum(c.addons.values()), c.fund, c.vat, c.total]
    return out
