"""The SQL behind every total: placements, contracts, and hourly_stats summed by the database.

``powerflow_common.totals`` decides (pure); this module loads what it needs and asks the
database to sum hours the way it decided, so the API statistics, the summary, the CSV
exports and the report facts read one truth. Statistics stay summed in SQL: a year of a
site returns one row per local day, not 8,760 rows per device.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from msgspec import UNSET, UnsetType
from sqlalchemy import Connection, DateTime, select

from powerflow_common.db.models import (
    DAILY_SITE_STATE,
    DEVICE_SITES,
    DEVICES,
    RENEWABLE_CONTRACTS,
    SITES,
)
from powerflow_common.db.sqltime import SqlTime, bind_text, sql_time_of
from powerflow_common.errors import InvalidInput, NotFound
from powerflow_common.logs import get_logger
from powerflow_common.periods import Period, period_bounds_utc, utc_offset_segments
from powerflow_common.totals import (
    BEGINNING,
    END_OF_TIME,
    ContractPeriod,
    Placement,
    SiteEnergy,
    Span,
    counted_groups,
    spans,
)
from powerflow_common.validation import canonical_device_code

__all__ = [
    "ENV_COLUMNS",
    "PeriodSums",
    "PlacementError",
    "ScopeDevice",
    "ScopeKind",
    "ScopeNotFound",
    "SiteContracts",
    "TotalsScope",
    "counted_now",
    "load_contracts",
    "load_placements",
    "load_scope",
    "local_period_key",
    "period_sums",
    "range_sums",
    "record_placement",
    "span_condition",
]

log = get_logger(__name__)

ScopeKind = Literal["organisation", "site", "device", "devices"]
SiteContracts = dict[int, tuple[str, list[ContractPeriod]]]  # site -> (timezone, contracts)
ENV_COLUMNS = ("temperature_avg_c", "humidity_avg_pct", "brightness_avg_lux")
# Unassigned devices' site key in SQL, where NULL would mean "outside the scope".
_UNASSIGNED_KEY = -1

_sites = SITES
_devices = DEVICES
_history = DEVICE_SITES
_contracts = RENEWABLE_CONTRACTS


class ScopeNotFound(NotFound, LookupError):
    """The scope's site or device does not exist."""


class PlacementError(InvalidInput, ValueError):
    """A placement change that cannot be recorded (a future date, say)."""


def record_placement(
    conn: Connection,
    code: str,
    *,
    site_id: int | UnsetType | None = UNSET,
    meter_role: str | UnsetType = UNSET,
    effective_from: datetime | None = None,
    by: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Record a device's new site and/or meter role in its history; False if it did not change.

    From now on, unless ``effective_from`` dates it back: a restatement by an operator,
    which replaces the changes recorded after that moment. Arguments left UNSET keep their
    current value. The caller updates the devices row in the same
    transaction. A device without history first gets its current placement recorded (from
    its first_seen_at), so the change is not read back to the beginning of time.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    d, h = _devices, _history
    # The device row locked: two changes of one device at once are recorded one after the
    # other, never as two history rows from the same moment.
    row = conn.execute(
        select(d.c.id, d.c.site_id, d.c.meter_role, d.c.first_seen_at)
        .where(d.c.code == canonical_device_code(code))
        .with_for_update()
    ).first()
    if row is None:
        return False
    new_site = row.site_id if isinstance(site_id, UnsetType) else site_id
    new_role = row.meter_role if isinstance(meter_role, UnsetType) else meter_role
    at = now if effective_from is None else effective_from.astimezone(UTC)
    if at > now:
        raise PlacementError(
            f"effective_from {at.isoformat()} is in the future; record a change when it happens."
        )
    if effective_from is None and (new_site, new_role) == (row.site_id, row.meter_role):
        return False
    has_history = conn.execute(select(h.c.id).where(h.c.device_id == row.id).limit(1)).first()
    if has_history is None and row.first_seen_at < at:
        conn.execute(
            h.insert().values(
                device_id=row.id,
                site_id=row.site_id,
                meter_role=row.meter_role,
                valid_from=row.first_seen_at,
                recorded_at=now,
                recorded_by=by,
            )
        )
    # Who counts on each site the device sat on changes: their cached days (daily_site) are
    # not served until rebuilt. By hand here: daily_site imports this module.
    old_sites = conn.execute(select(h.c.site_id).distinct().where(h.c.device_id == row.id))
    touched = {row.site_id, new_site, *old_sites.scalars()} - {None}
    if touched:
        conn.execute(
            DAILY_SITE_STATE.delete().where(DAILY_SITE_STATE.c.site_id.in_(sorted(touched)))
        )
    conn.execute(h.delete().where(h.c.device_id == row.id, h.c.valid_from >= at))
    conn.execute(
        h.insert().values(
            device_id=row.id,
            site_id=new_site,
            meter_role=new_role,
            valid_from=at,
            recorded_at=now,
            recorded_by=by,
        )
    )
    return True


@dataclass(frozen=True, slots=True)
class ScopeDevice:
    """A device of a scope as it is now: the API's totals and the report's devices read it."""

    id: int
    code: str
    site_id: int | None  # now
    meter_role: str  # now
    name: str | None = None  # free text typed by people, as is location
    location: str | None = None

    @property
    def label(self) -> str:
        """What people call it: its name, else its code (untrusted text either way)."""
        return self.name or self.code


@dataclass(slots=True)
class TotalsScope:
    """What a total covers: its devices' spans over time, its calendar and its contracts."""

    kind: ScopeKind
    timezone: str
    spans: list[Span]
    devices: list[ScopeDevice]  # every device with a span in the scope, as it is now
    contracts: SiteContracts = field(default_factory=dict)
    site_id: int | None = None
    label: str = "organisation"
    floor_area_m2: float | None = None

    def counted_ids(self) -> set[int]:
        return {s.device_id for s in self.spans if s.counted}

    def spans_by_device(self) -> dict[int, list[Span]]:
        out: dict[int, list[Span]] = defaultdict(list)
        for s in self.spans:
            out[s.device_id].append(s)
        return out


def load_placements(conn: Connection, device_ids: Sequence[int] | None = None) -> list[Placement]:
    """The placement history of these devices (all when None), marked admitted or waiting.

    A device without history rows (created by the writer, or before history existed) sits
    where its devices row says, from the beginning of time. When the devices row disagrees
    with the latest history row (changed in SQL, outside the API), the devices row is the
    current truth: the latest history row is read as that placement, and a warning says so.
    """
    d, h = _devices, _history
    dq = select(d.c.id, d.c.code, d.c.site_id, d.c.meter_role, d.c.admitted_at)
    hq = select(h.c.device_id, h.c.site_id, h.c.meter_role, h.c.valid_from)
    if device_ids is not None:
        if not device_ids:
            return []
        dq = dq.where(d.c.id.in_(sorted(device_ids)))
        hq = hq.where(h.c.device_id.in_(sorted(device_ids)))
    history: dict[int, list[Placement]] = defaultdict(list)
    for hr in conn.execute(hq.order_by(h.c.device_id, h.c.valid_from)):
        history[hr.device_id].append(
            Placement(hr.device_id, hr.site_id, hr.meter_role, hr.valid_from)
        )
    out: list[Placement] = []
    for r in conn.execute(dq):
        # Admission is the device's, for its whole history (totals.py).
        admitted = r.admitted_at is not None
        rows = [
            Placement(p.device_id, p.site_id, p.meter_role, p.valid_from, admitted)
            for p in history.get(r.id, ())
        ]
        if not rows:
            out.append(Placement(r.id, r.site_id, r.meter_role, BEGINNING, admitted))
            continue
        last = rows[-1]
        if (last.site_id, last.meter_role) != (r.site_id, r.meter_role):
            log.warning(
                "device_site_history_mismatch",
                device=r.code,
                history=[last.site_id, last.meter_role],
                device_row=[r.site_id, r.meter_role],
                fix="change sites and roles through PATCH /api/v1/devices/{code}",
            )
            rows[-1] = Placement(r.id, r.site_id, r.meter_role, last.valid_from, admitted)
        out.extend(rows)
    return out


def counted_now(conn: Connection, now: datetime | None = None) -> set[int]:
    """The devices that add to their site's (or the unassigned devices') total at ``now``.

    Never a waiting device: it is outside every total until admitted.
    """
    at = (now or datetime.now(UTC)).astimezone(UTC)
    return {s.device_id for s in spans(load_placements(conn)) if s.counted and s.covers(at)}


def _device_ids_of_site(conn: Connection, site_id: int) -> list[int]:
    """Devices on the site now or at any time in their history."""
    now = conn.execute(select(_devices.c.id).where(_devices.c.site_id == site_id)).scalars()
    before = conn.execute(
        select(_history.c.device_id).distinct().where(_history.c.site_id == site_id)
    ).scalars()
    return sorted({*now, *before})


def load_contracts(conn: Connection, site_ids: Iterable[int]) -> SiteContracts:
    """Renewable contracts of these sites, with each site's timezone."""
    ids = sorted(set(site_ids))
    if not ids:
        return {}
    out: SiteContracts = {
        r.id: (r.timezone, [])
        for r in conn.execute(select(_sites.c.id, _sites.c.timezone).where(_sites.c.id.in_(ids)))
    }
    for c in conn.execute(select(_contracts).where(_contracts.c.site_id.in_(ids))):
        out[c.site_id][1].append(
            ContractPeriod(c.period_start, c.period_end, c.energy_kwh, c.instrument)
        )
    return out


def load_scope(
    conn: Connection,
    kind: ScopeKind,
    *,
    default_tz: str,
    site_id: int | None = None,
    device_code: str | None = None,
    device_ids: Sequence[int] = (),
) -> TotalsScope:
    """The scope's spans (who counts when), timezone and contracts; ScopeNotFound if unknown.

    - organisation: every device, the rule per site and for the unassigned ones; every
      site's contracts; the organisation's timezone (``default_tz``).
    - site: the hours its devices spent on it; its contracts; its timezone.
    - device: one device's every hour, counted whatever its role or admission; no contracts
      (they belong to a site's supply: charged to one meter they would be claimed once per
      meter).
    - devices: the rule applied among these devices; no contracts.

    Waiting (not admitted) devices are in no scope but their own (totals.spans).
    """
    tz = default_tz
    label = "organisation"
    floor_area: float | None = None
    contract_sites: list[int] = []
    every_device_counts = False
    ids: list[int] | None
    if kind == "site":
        site = conn.execute(select(_sites).where(_sites.c.id == site_id)).first()
        if site is None:
            raise ScopeNotFound(f"No site with id {site_id}.")
        tz, label, floor_area = site.timezone, site.name, site.floor_area_m2
        ids = _device_ids_of_site(conn, site.id)
        contract_sites = [site.id]
    elif kind == "device":
        row = conn.execute(
            select(_devices.c.id, _devices.c.site_id).where(
                _devices.c.code == canonical_device_code(device_code or "")
            )
        ).first()
        if row is None:
            raise ScopeNotFound(f"No device with code {device_code!r}.")
        if row.site_id is not None:
            tz = conn.execute(
                select(_sites.c.timezone).where(_sites.c.id == row.site_id)
            ).scalar_one()
        ids, every_device_counts, label = [row.id], True, str(device_code)
    elif kind == "devices":
        ids, label = sorted(device_ids), "devices"
    else:
        ids = None
        sites = list(conn.execute(select(_sites.c.id, _sites.c.floor_area_m2)))
        contract_sites = [s.id for s in sites]
        if sites and all(s.floor_area_m2 for s in sites):
            floor_area = sum(s.floor_area_m2 for s in sites)
    scope_spans = spans(load_placements(conn, ids), every_device_counts=every_device_counts)
    if kind == "site":
        scope_spans = [s for s in scope_spans if s.site_id == site_id]
    in_scope = {s.device_id for s in scope_spans}
    devices = [
        ScopeDevice(r.id, r.code, r.site_id, r.meter_role, r.name, r.location)
        for r in conn.execute(
            select(
                _devices.c.id,
                _devices.c.code,
                _devices.c.site_id,
                _devices.c.meter_role,
                _devices.c.name,
                _devices.c.location,
            )
            .where(_devices.c.id.in_(sorted(in_scope) or [-1]))
            .order_by(_devices.c.id)
        )
    ]
    return TotalsScope(
        kind=kind,
        timezone=tz,
        spans=scope_spans,
        devices=devices,
        contracts=load_contracts(conn, contract_sites),
        site_id=site_id,
        label=label,
        floor_area_m2=floor_area,
    )


# --- SQL over hourly_stats ---------------------------------------------------------------------


def _naive(at: datetime) -> datetime:  # plain SQL: UTC without an offset, as stored
    return at.astimezone(UTC).replace(tzinfo=None)


def span_condition(
    scope_spans: Iterable[Span], *, counted_only: bool, prefix: str
) -> tuple[str, dict[str, Any]]:
    """A SQL condition on hourly_stats (device_id, hour_start) that holds for the spans' hours.

    Device ids are integers from the database, written inline; bounds are parameters.
    """
    groups = counted_groups(scope_spans, counted_only=counted_only)
    if not groups:
        return "(0 = 1)", {}
    parts: list[str] = []
    params: dict[str, Any] = {}
    for i, (lo, hi, ids) in enumerate(groups):
        terms = [f"device_id IN ({', '.join(str(int(d)) for d in ids)})"]
        if lo != BEGINNING:
            terms.append(f"hour_start >= :{prefix}_lo{i}")
            params[f"{prefix}_lo{i}"] = _naive(lo)
        if hi != END_OF_TIME:
            terms.append(f"hour_start < :{prefix}_hi{i}")
            params[f"{prefix}_hi{i}"] = _naive(hi)
        parts.append("(" + " AND ".join(terms) + ")")
    return "(" + " OR ".join(parts) + ")", params


def _site_key(scope_spans: Iterable[Span]) -> tuple[str, dict[str, Any]]:
    """A SQL expression giving a counted hour's site (-1 for unassigned devices)."""
    by_site: dict[int, list[Span]] = defaultdict(list)
    for s in scope_spans:
        if s.counted:
            by_site[_UNASSIGNED_KEY if s.site_id is None else s.site_id].append(s)
    if not by_site:
        return "NULL", {}
    whens: list[str] = []
    params: dict[str, Any] = {}
    for n, (site, members) in enumerate(sorted(by_site.items())):
        condition, more = span_condition(members, counted_only=True, prefix=f"sk{n}")
        whens.append(f"WHEN {condition} THEN {int(site)}")
        params.update(more)
    return "CASE " + " ".join(whens) + " END", params


def local_period_key(
    period: Period, tz: str, start: datetime, end: datetime, sql: SqlTime
) -> tuple[str, str, dict[str, Any]]:
    """(local timestamp SQL, GROUP BY key over ``local_ts``, params) to cut local periods.

    The zone's offsets over [start, end) come from periods.utc_offset_segments, so the
    database needs no timezone tables: plain arithmetic on hourly_stats.hour_start, spelt
    in the connection's dialect (``sql``, db.sqltime).
    """
    segments = utc_offset_segments(tz, start, end)
    if len(segments) > 1:
        offset = (
            "CASE "
            + " ".join(
                f"WHEN hour_start < :seg_{i} THEN {segments[i - 1][1]}"
                for i in range(1, len(segments))
            )
            + f" ELSE {segments[-1][1]} END"
        )
    else:
        offset = str(segments[0][1])
    local_ts = sql.plus_minutes("hour_start", offset)
    key = {
        "hour": "hs",
        "day": sql.day("local_ts"),
        "week": sql.week("local_ts"),
        "month": sql.month("local_ts"),
    }[period]
    params = {f"seg_{i}": _naive(segments[i][0]) for i in range(1, len(segments))}
    return local_ts, key, params


@dataclass(slots=True)
class PeriodSums:
    """One local period of a scope, summed by the database (hours first, then the period)."""

    start: datetime  # UTC start of the local period
    end: datetime
    hours: int  # hours with data of a counted device
    device_hours: int
    energy_kwh: float
    export_kwh: float
    unallocated_kwh: float
    co2_kg: float
    coverage_sum: float
    demand_sum_w: float  # per hour: the counted devices' summed average power
    demand_hours: int
    demand_max_w: float | None
    sample_max_w: float | None  # the highest sample of any counted device
    env: dict[str, tuple[float, float]]  # name -> (sum of value x samples, sum of samples)
    sites: list[SiteEnergy] = field(default_factory=list)  # counted kWh and kg per site


def period_sums(
    conn: Connection, scope: TotalsScope, period: Period, start: datetime, end: datetime
) -> tuple[list[PeriodSums], set[int]]:
    """Per local period of the scope (ordered), and the emission factors its counted hours used.

    The database sums devices per hour, then hours per local period, so a year of a site
    returns 366 rows; a second grouped query splits counted kWh by site for Scope 2.
    """
    in_scope, p_scope = span_condition(scope.spans, counted_only=False, prefix="in")
    counted, p_counted = span_condition(scope.spans, counted_only=True, prefix="ct")
    if not scope.spans:
        return [], set()
    sql = sql_time_of(conn)
    local_ts, key, p_local = local_period_key(period, scope.timezone, start, end, sql)
    weight = sql.greatest("samples", "1")
    env_inner = ", ".join(
        f"SUM({c} * {weight}) AS {c}_vw, SUM(CASE WHEN {c} IS NOT NULL THEN {weight} END) AS {c}_w"
        for c in ENV_COLUMNS
    )
    env_outer = ", ".join(f"SUM({c}_vw) AS {c}_vw, SUM({c}_w) AS {c}_w" for c in ENV_COLUMNS)

    def when_counted(column: str) -> str:
        return f"CASE WHEN {counted} THEN {column} END"

    sql_text = f"""
        SELECT MIN(hs) AS first_hour,
               SUM(counted_rows > 0) AS hours, SUM(counted_rows) AS device_hours,
               SUM(energy) AS energy, SUM(export) AS export, SUM(unallocated) AS unallocated,
               SUM(co2) AS co2, SUM(coverage) AS coverage,
               SUM(demand) AS demand_sum, COUNT(demand) AS demand_hours,
               MAX(demand) AS demand_max, MAX(sample_max) AS sample_max, {env_outer}
        FROM (
            SELECT hour_start AS hs, {local_ts} AS local_ts,
                   SUM({counted}) AS counted_rows,
                   SUM({when_counted("energy_kwh")}) AS energy,
                   SUM({when_counted("export_kwh")}) AS export,
                   SUM({when_counted("unallocated_kwh")}) AS unallocated,
                   SUM({when_counted("co2_kg")}) AS co2,
                   SUM({when_counted("coverage")}) AS coverage,
                   SUM({when_counted("power_avg_w")}) AS demand,
                   MAX({when_counted("power_max_w")}) AS sample_max,
                   {env_inner}
            FROM hourly_stats
            WHERE {in_scope} AND hour_start >= :start AND hour_start < :end
            GROUP BY hour_start
        ) AS per_hour
        GROUP BY {key}
        ORDER BY first_hour
        """
    params: dict[str, Any] = {"start": _naive(start), "end": _naive(end)}
    params.update(p_scope)
    params.update(p_counted)
    params.update(p_local)
    rows = conn.execute(bind_text(sql_text, params, first_hour=DateTime())).all()

    def num(value: Any) -> float:
        return float(value or 0.0)

    sums: list[PeriodSums] = []
    for r in rows:
        lo, hi = period_bounds_utc(period, r.first_hour.replace(tzinfo=UTC), scope.timezone)
        sums.append(
            PeriodSums(
                start=lo,
                end=hi,
                hours=int(r.hours or 0),
                device_hours=int(r.device_hours or 0),
                energy_kwh=num(r.energy),
                export_kwh=num(r.export),
                unallocated_kwh=num(r.unallocated),
                co2_kg=num(r.co2),
                coverage_sum=num(r.coverage),
                demand_sum_w=num(r.demand_sum),
                demand_hours=int(r.demand_hours or 0),
                demand_max_w=None if r.demand_max is None else float(r.demand_max),
                sample_max_w=None if r.sample_max is None else float(r.sample_max),
                env={
                    c: (num(getattr(r, f"{c}_vw")), num(getattr(r, f"{c}_w"))) for c in ENV_COLUMNS
                },
            )
        )
    if any(periods for _, periods in scope.contracts.values()):
        by_start = {s.start: s for s in sums}
        for lo, site in _site_sums(conn, scope, period, start, end):
            if lo in by_start:
                by_start[lo].sites.append(site)
    else:  # without contracts Scope 2 needs no split by site: one query fewer
        for s in sums:
            s.sites.append(SiteEnergy(None, s.energy_kwh + s.unallocated_kwh, s.co2_kg))
    return sums, _factor_ids(conn, counted, p_counted, start, end)


def _site_sums(
    conn: Connection, scope: TotalsScope, period: Period, start: datetime, end: datetime
) -> list[tuple[datetime, SiteEnergy]]:
    """Counted kWh (allocated and unallocated) and kg per local period and site."""
    counted, p_counted = span_condition(scope.spans, counted_only=True, prefix="ct")
    site_key, p_site = _site_key(scope.spans)
    local_ts, key, p_local = local_period_key(period, scope.timezone, start, end, sql_time_of(conn))
    sql_text = f"""
        SELECT MIN(hs) AS first_hour, site_key, SUM(kwh) AS kwh, SUM(co2) AS co2
        FROM (
            SELECT hour_start AS hs, {local_ts} AS local_ts, {site_key} AS site_key,
                   energy_kwh + unallocated_kwh AS kwh, co2_kg AS co2
            FROM hourly_stats
            WHERE {counted} AND hour_start >= :start AND hour_start < :end
        ) AS counted_hours
        GROUP BY {key}, site_key
        """
    params: dict[str, Any] = {"start": _naive(start), "end": _naive(end)}
    params.update(p_counted)
    params.update(p_site)
    params.update(p_local)
    out = []
    for r in conn.execute(bind_text(sql_text, params, first_hour=DateTime())):
        lo, _ = period_bounds_utc(period, r.first_hour.replace(tzinfo=UTC), scope.timezone)
        site = None if r.site_key in (None, _UNASSIGNED_KEY) else int(r.site_key)
        out.append((lo, SiteEnergy(site, float(r.kwh or 0.0), float(r.co2 or 0.0))))
    return out


def _factor_ids(
    conn: Connection, counted: str, params: dict[str, Any], start: datetime, end: datetime
) -> set[int]:
    statement = bind_text(
        f"SELECT DISTINCT emission_factor_id FROM hourly_stats WHERE {counted}"
        " AND hour_start >= :start AND hour_start < :end AND emission_factor_id IS NOT NULL",
        {**params, "start": _naive(start), "end": _naive(end)},
    )
    rows = conn.execute(statement)
    return {int(r[0]) for r in rows}


@dataclass(frozen=True, slots=True)
class RangeSums:
    """A scope's counted figures over one UTC range."""

    energy_kwh: float
    unallocated_kwh: float
    co2_kg: float
    factor_ids: set[int]
    sites: list[SiteEnergy]


def range_sums(conn: Connection, scope: TotalsScope, start: datetime, end: datetime) -> RangeSums:
    """kWh and kg CO2 of the scope's counted hours in [start, end), summed by the database."""
    counted, p_counted = span_condition(scope.spans, counted_only=True, prefix="ct")
    site_key, p_site = _site_key(scope.spans)
    sql_text = f"""
        SELECT site_key, SUM(energy_kwh) AS energy, SUM(unallocated_kwh) AS unallocated,
               SUM(co2_kg) AS co2
        FROM (
            SELECT {site_key} AS site_key, energy_kwh, unallocated_kwh, co2_kg
            FROM hourly_stats
            WHERE {counted} AND hour_start >= :start AND hour_start < :end
        ) AS counted_hours
        GROUP BY site_key
        """
    params: dict[str, Any] = {"start": _naive(start), "end": _naive(end), **p_counted, **p_site}
    rows = conn.execute(bind_text(sql_text, params)).all()
    sites = [
        SiteEnergy(
            None if r.site_key in (None, _UNASSIGNED_KEY) else int(r.site_key),
            float(r.energy or 0.0) + float(r.unallocated or 0.0),
            float(r.co2 or 0.0),
        )
        for r in rows
    ]
    return RangeSums(
        energy_kwh=sum(float(r.energy or 0.0) for r in rows),
        unallocated_kwh=sum(float(r.unallocated or 0.0) for r in rows),
        co2_kg=sum(float(r.co2 or 0.0) for r in rows),
        factor_ids=_factor_ids(conn, counted, p_counted, start, end) if rows else set(),
        sites=sites,
    )
