"""A site's cost, bill and forecast from its counted hours and quarters (SQL + tariffs.py).

The kWh come through the totals' own rule (``queries.span_condition`` over the scope's
counted spans), so a cost is the cost of exactly the kWh the statistics show: each hour's
``energy_kwh + unallocated_kwh`` of the counted devices (unallocated energy is charged in
the hour it is booked in, as its CO2 is). Demand comes from ``quarter_hour_stats`` of the
same devices and hours: the 15-minute kWh x 4.

A site's tariff (``site_tariffs``) changes only at the start of a local month: a bill is
monthly, and one bill has one tariff and one contract power.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import Connection, DateTime, select

from powerflow_common.db.models import SITE_TARIFFS, SITES, TARIFF_COMPONENTS, TARIFFS
from powerflow_common.db.sqltime import bind_text
from powerflow_common.errors import InvalidInput, NotFound
from powerflow_common.periods import Period, iter_periods_utc, period_bounds_utc
from powerflow_common.queries import TotalsScope, span_condition
from powerflow_common.tariffs import (
    Bill,
    Component,
    CostBreakdown,
    DemandPeak,
    Forecast,
    Interval,
    Plan,
    Tariff,
    TariffDefinition,
    TariffError,
    TariffNotFound,
    energy_cost,
    forecast_month,
    month_bill,
    monthly_peaks,
    validate_definition,
)

__all__ = [
    "CostBucket",
    "CostError",
    "NoTariff",
    "SiteTariffRow",
    "assign_site_tariff",
    "cost_facts",
    "hourly_intervals",
    "load_components",
    "load_tariffs",
    "merge",
    "quarter_intervals",
    "site_bill",
    "site_cost",
    "site_forecast",
    "site_tariff_history",
    "to_tariff",
    "validate_new_tariff",
]

# A bill reads the month and the ratchet's last 12 months of quarters: 13 months.
RATCHET_SPAN_MONTHS = 13


class CostError(InvalidInput, ValueError):
    """A cost that cannot be computed as asked (mixed currencies, a bad assignment...)."""


class NoTariff(NotFound, LookupError):
    """The site has no tariff for (part of) the period asked."""


@dataclass(frozen=True, slots=True)
class SiteTariffRow:
    site_id: int
    tariff_name: str
    contract_power_kw: float
    valid_from: date
    recorded_at: datetime
    recorded_by: str | None


def to_tariff(row: Any) -> Tariff:
    return Tariff(
        id=int(row.id),
        name=row.name,
        label=row.label,
        valid_from=row.valid_from,
        valid_to=row.valid_to,
        source=row.source,
        definition=msgspec.convert(row.definition, TariffDefinition),
    )


def load_tariffs(conn: Connection, name: str | None = None) -> list[Tariff]:
    query = select(TARIFFS).order_by(TARIFFS.c.name, TARIFFS.c.valid_from)
    if name is not None:
        query = query.where(TARIFFS.c.name == name)
    return [to_tariff(r) for r in conn.execute(query)]


def load_components(conn: Connection) -> list[Component]:
    t = TARIFF_COMPONENTS
    return [
        Component(
            id=int(r.id),
            component_set=r.component_set,
            name=r.name,
            kind=r.kind,
            rate=float(r.rate),
            valid_from=r.valid_from,
            valid_to=r.valid_to,
            source=r.source,
        )
        for r in conn.execute(select(t).order_by(t.c.component_set, t.c.name, t.c.valid_from))
    ]


def site_tariff_history(conn: Connection, site_id: int) -> list[SiteTariffRow]:
    st = SITE_TARIFFS
    rows = conn.execute(select(st).where(st.c.site_id == site_id).order_by(st.c.valid_from)).all()
    return [
        SiteTariffRow(
            r.site_id,
            r.tariff_name,
            float(r.contract_power_kw),
            r.valid_from,
            r.recorded_at,
            r.recorded_by,
        )
        for r in rows
    ]


def assign_site_tariff(
    conn: Connection,
    site_id: int,
    tariff_name: str,
    contract_power_kw: float,
    valid_from: date,
    *,
    by: str | None,
    now: datetime | None = None,
) -> SiteTariffRow:
    """Put the site on ``tariff_name`` from the local month starting ``valid_from`` (replaces
    an assignment from the same month). The caller's transaction writes."""
    if valid_from.day != 1:
        raise CostError(
            f"valid_from {valid_from.isoformat()} is not the first day of a month: a site's "
            "tariff changes at the start of a billing month"
        )
    if not load_tariffs(conn, tariff_name):
        raise NoTariff(f"No tariff named {tariff_name!r}; list them with GET /api/v1/tariffs.")
    at = (now or datetime.now(UTC)).astimezone(UTC)
    st = SITE_TARIFFS
    conn.execute(st.delete().where(st.c.site_id == site_id, st.c.valid_from == valid_from))
    conn.execute(
        st.insert().values(
            site_id=site_id,
            tariff_name=tariff_name,
            contract_power_kw=contract_power_kw,
            valid_from=valid_from,
            recorded_at=at,
            recorded_by=by,
        )
    )
    return SiteTariffRow(site_id, tariff_name, contract_power_kw, valid_from, at, by)


def _naive(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None)


def hourly_intervals(
    conn: Connection, scope: TotalsScope, start: datetime, end: datetime
) -> list[Interval]:
    """The scope's counted kWh per UTC hour in [start, end): energy + unallocated."""
    counted, params = span_condition(scope.spans, counted_only=True, prefix="ct")
    sql = f"""
        SELECT hour_start AS hs, SUM(energy_kwh + unallocated_kwh) AS kwh
        FROM hourly_stats
        WHERE {counted} AND hour_start >= :start AND hour_start < :end
        GROUP BY hour_start ORDER BY hour_start
        """
    rows = conn.execute(
        bind_text(sql, {**params, "start": _naive(start), "end": _naive(end)}, hs=DateTime())
    )
    return [Interval(r.hs.replace(tzinfo=UTC), max(0.0, float(r.kwh or 0.0))) for r in rows]


def quarter_intervals(
    conn: Connection, scope: TotalsScope, start: datetime, end: datetime
) -> list[Interval]:
    """The scope's counted kWh per 15 minutes in [start, end) (placed by the quarter's hour).

    ``end`` may fall inside an hour (a bill as of an instant): quarters from it are left out.
    """
    counted, params = span_condition(scope.spans, counted_only=True, prefix="ct")
    sql = f"""
        SELECT quarter_start AS qs, SUM(energy_kwh) AS kwh
        FROM quarter_hour_stats
        WHERE {counted} AND hour_start >= :start AND hour_start < :end AND quarter_start < :end
        GROUP BY quarter_start ORDER BY quarter_start
        """
    rows = conn.execute(
        bind_text(sql, {**params, "start": _naive(start), "end": _naive(end)}, qs=DateTime())
    )
    return [Interval(r.qs.replace(tzinfo=UTC), max(0.0, float(r.kwh or 0.0))) for r in rows]


def _site_timezone(conn: Connection, site_id: int) -> str:
    tz = conn.execute(select(SITES.c.timezone).where(SITES.c.id == site_id)).scalar_one_or_none()
    if tz is None:
        raise NoTariff(f"No site with id {site_id}.")
    return str(tz)


class _Plans:
    """The site's plans by local month (assignment in force at the month's first day)."""

    def __init__(self, conn: Connection, site_id: int, timezone: str) -> None:
        self.history = site_tariff_history(conn, site_id)
        self.timezone = timezone
        self.zone = ZoneInfo(timezone)
        self.components = load_components(conn)
        self._conn = conn
        self._plans: dict[str, Plan] = {}
        self.site_id = site_id

    def at(self, month_first: date) -> tuple[Plan, SiteTariffRow] | None:
        current = [h for h in self.history if h.valid_from <= month_first]
        if not current:
            return None
        row = current[-1]
        plan = self._plans.get(row.tariff_name)
        if plan is None:
            versions = load_tariffs(self._conn, row.tariff_name)
            if not versions:
                raise NoTariff(f"Tariff {row.tariff_name!r} of site {self.site_id} is gone.")
            plan = self._plans[row.tariff_name] = Plan(versions, self.components, self.timezone)
        return plan, row


@dataclass(slots=True)
class CostBucket:
    start: datetime
    end: datetime
    energy_kwh: float  # costed kWh: the statistics' energy_kwh + unallocated_kwh
    cost: CostBreakdown | None  # None: no tariff for this bucket


def site_cost(
    conn: Connection,
    scope: TotalsScope,
    period: Period,
    start: datetime,
    end: datetime,
) -> tuple[str | None, list[CostBucket], float]:
    """(currency, buckets, uncosted kWh) of a site's counted energy per local period.

    Hours before the site's first tariff are not costed: their kWh are returned apart.
    """
    if scope.site_id is None:
        raise CostError("cost is per site")
    plans = _Plans(conn, scope.site_id, scope.timezone)
    intervals = hourly_intervals(conn, scope, start, end)
    by_bucket: dict[datetime, list[Interval]] = defaultdict(list)
    bounds: dict[datetime, datetime] = {}
    for lo, hi in iter_periods_utc(period, start, end, scope.timezone):
        bounds[lo] = hi
    for item in intervals:
        lo, _ = period_bounds_utc(period, item.start, scope.timezone)
        by_bucket[lo].append(item)
    currency: str | None = None
    uncosted = 0.0
    out: list[CostBucket] = []
    for lo, hi in bounds.items():
        items = by_bucket.get(lo, [])
        # Group by the local month's plan (a week may straddle two months).
        by_plan: dict[int, tuple[Plan, list[Interval]]] = {}
        for item in items:
            month_first = item.start.astimezone(plans.zone).date().replace(day=1)
            found = plans.at(month_first)
            if found is None or not found[0].covers(item.start):
                uncosted += item.kwh  # before the site's first tariff or its first version
                continue
            plan = found[0]
            by_plan.setdefault(id(plan), (plan, []))[1].append(item)
        parts = [energy_cost(plan, chunk) for plan, chunk in by_plan.values()]
        for part in parts:
            if currency is None:
                currency = part.currency
            elif part.currency != currency:
                raise CostError(
                    f"the period mixes currencies ({currency}, {part.currency}); ask for "
                    "a range within one tariff"
                )
        cost = merge(parts) if parts else None
        kwh = sum(i.kwh for i in items)
        out.append(CostBucket(max(lo, start), min(hi, end), kwh, cost))
    return currency, out, uncosted


def merge(parts: Sequence[CostBreakdown]) -> CostBreakdown:
    if len(parts) == 1:
        return parts[0]
    out = CostBreakdown(currency=parts[0].currency)
    for p in parts:
        out.kwh += p.kwh
        out.energy += p.energy
        out.subtotal += p.subtotal
        out.fund += p.fund
        out.vat += p.vat
        out.total += p.total
        for k, v in p.kwh_by_band.items():
            out.kwh_by_band[k] = out.kwh_by_band.get(k, 0.0) + v
        for k, v in p.energy_by_band.items():
            out.energy_by_band[k] = out.energy_by_band.get(k, 0.0) + v
        for k, v in p.addons.items():
            out.addons[k] = out.addons.get(k, 0.0) + v
    return out


def _month_context(
    conn: Connection, scope: TotalsScope, year: int, month: int, until: datetime | None = None
) -> tuple[Plan, SiteTariffRow, datetime, datetime, dict[tuple[int, int], DemandPeak]]:
    if scope.site_id is None:
        raise CostError("a bill is per site")
    plans = _Plans(conn, scope.site_id, scope.timezone)
    first = date(year, month, 1)
    found = plans.at(first)
    if found is None:
        raise NoTariff(
            f"Site {scope.site_id} has no tariff for {first:%Y-%m}; assign one with "
            f"PUT /api/v1/sites/{scope.site_id}/tariff."
        )
    plan, row = found
    try:
        version = plan.version_on(first)
    except TariffNotFound as exc:
        raise NoTariff(
            f"Tariff {row.tariff_name!r} has no version valid on {first.isoformat()}; add one "
            "with POST /api/v1/tariffs or date the site's tariff later."
        ) from exc
    mid = datetime(year, month, 15, tzinfo=plan.zone)
    start, end = period_bounds_utc("month", mid, scope.timezone)
    # Quarters of the month and the months before it the ratchet looks back over: the
    # tariff's own look-back (up to 24 months), never fewer than 12 as before.
    rule = version.definition.demand
    months = max(12, rule.ratchet_lookback_months if rule is not None else 0)
    back_year, back_month = divmod(year * 12 + (month - 1) - months, 12)
    back = datetime(back_year, back_month + 1, 1, tzinfo=plan.zone).astimezone(UTC)
    # A bill or forecast as of ``until`` sees only the quarters before it: a later peak was
    # not yet known (energy is cut at the same instant).
    stop = end if until is None else max(start, min(end, until))
    peaks = monthly_peaks(plan, quarter_intervals(conn, scope, back, stop))
    return plan, row, start, end, peaks


def site_bill(
    conn: Connection, scope: TotalsScope, year: int, month: int, until: datetime | None = None
) -> Bill:
    """The site's bill of local month ``year``-``month``, up to ``until`` when it is earlier."""
    plan, row, start, end, peaks = _month_context(conn, scope, year, month, until)
    stop = end if until is None else max(start, min(end, until))
    energy = hourly_intervals(conn, scope, start, stop)
    try:
        bill = month_bill(plan, year, month, start, stop, energy, peaks, row.contract_power_kw)
    except TariffNotFound as exc:
        # A version ending mid-month with no successor: site_cost leaves those hours uncosted,
        # and the month has no whole bill; NoTariff, which callers already skip or report.
        raise NoTariff(
            f"Tariff {row.tariff_name!r} has no version valid on every day of "
            f"{year:04d}-{month:02d} ({exc}); add one with POST /api/v1/tariffs."
        ) from exc
    bill.complete = stop >= end
    return bill


def site_forecast(conn: Connection, scope: TotalsScope, now: datetime) -> Forecast:
    """The bill of the local month containing ``now``, projected to its end."""
    if scope.site_id is None:
        raise CostError("a forecast is per site")
    tz = _site_timezone(conn, scope.site_id)
    start, _ = period_bounds_utc("month", now, tz)
    local_first = (start + timedelta(hours=12)).astimezone(ZoneInfo(tz)).date()
    plan, row, start, end, peaks = _month_context(
        conn, scope, local_first.year, local_first.month, now
    )
    energy = hourly_intervals(conn, scope, start, min(now, end))
    return forecast_month(
        plan, local_first.year, local_first.month, start, end, now, energy, peaks,
        row.contract_power_kw,
    )  # fmt: skip


def validate_new_tariff(definition: Any) -> TariffDefinition:
    """A definition from a request body, converted and validated; TariffError if unusable."""
    try:
        converted = msgspec.convert(definition, TariffDefinition)
    except msgspec.ValidationError as exc:
        raise TariffError("bad_definition", str(exc)) from exc
    return validate_definition(converted)


def cost_facts(
    conn: Connection, scope: TotalsScope, start: datetime, end: datetime
) -> dict[str, Any]:
    """A site's cost of [start, end) as plain numbers, for the ESG report's facts.

    ``energy_*``: the exact energy-related cost of the period's counted kWh (any range).
    ``bills``: the bill of each local month lying wholly inside the period, with its billed
    demand; ``bill_total`` their sum. ``uncosted_kwh``: kWh of hours without a tariff.
    Raises NoTariff / CostError like the API.
    """
    currency, buckets, uncosted = site_cost(conn, scope, "month", start, end)
    parts = [b.cost for b in buckets if b.cost is not None]
    total = merge(parts) if parts else None
    bills: list[dict[str, Any]] = []
    for b in buckets:
        lo, hi = period_bounds_utc("month", b.start, scope.timezone)
        if lo < start or hi > end:
            continue
        local_first = (lo + timedelta(hours=12)).astimezone(ZoneInfo(scope.timezone)).date()
        try:
            bill = site_bill(conn, scope, local_first.year, local_first.month)
        except NoTariff:
            continue  # a month before the site's first tariff: its kWh are in uncosted_kwh
        bills.append(
            {
                "month": f"{bill.year:04d}-{bill.month:02d}",
                "tariff": bill.tariff.name,
                "billed_demand_kw": None if bill.demand is None else bill.demand.kw,
                "billed_demand_basis": None if bill.demand is None else bill.demand.basis,
                "demand_charge": bill.demand_charge,
                "energy_charge": bill.energy_charge,
                "addons": dict(bill.addons),
                "fixed_charge": bill.fixed_charge,
                "fund": bill.fund,
                "vat": bill.vat,
                "total": bill.total,
            }
        )
    return {
        "currency": currency,
        "energy_kwh": 0.0 if total is None else total.kwh,
        "energy_kwh_by_band": {} if total is None else dict(total.kwh_by_band),
        "energy_cost": 0.0 if total is None else total.energy,
        "energy_cost_by_band": {} if total is None else dict(total.energy_by_band),
        "addons": {} if total is None else dict(total.addons),
        "energy_related_total": 0.0 if total is None else total.total,
        "uncosted_kwh": uncosted,
        "bills": bills,
        "bill_total": sum(b["total"] for b in bills),
    }
