"""A site's energy and CO2 per day, week, month or year from its devices' hourly rows (pure).

The total comes from the site's main meters when it has any, else from its standalone
devices; sub-meters (and standalone devices behind a main meter) only show a breakdown, so
downstream plugs are never counted twice. Periods are cut in the site's timezone by
``periods.iter_periods_utc``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

import msgspec

from powerflow_common.periods import Period, bucket_start_local, iter_periods_utc
from powerflow_common.scope2 import ContractPeriod, Scope2, contracted_kwh_in, market_based_scope2

__all__ = [
    "Basis",
    "DeviceHour",
    "DeviceTotal",
    "SiteDevice",
    "SitePeriod",
    "site_basis",
    "site_totals",
]

Basis = Literal["main", "standalone", "none"]
_HOUR = timedelta(hours=1)


class SiteDevice(msgspec.Struct, frozen=True, kw_only=True):
    """A device of the site and its meter role (``main``, ``sub`` or ``standalone``)."""

    id: int
    code: str
    meter_role: str
    name: str | None = None


class DeviceHour(msgspec.Struct, frozen=True, kw_only=True):
    """The parts of an hourly_stats row that totals need."""

    device_id: int
    hour_start: datetime  # UTC
    energy_kwh: float
    unallocated_kwh: float = 0.0
    export_kwh: float = 0.0
    co2_kg: float = 0.0
    coverage: float = 0.0
    factor_set: str | None = None
    emission_factor_id: int | None = None


class DeviceTotal(msgspec.Struct, frozen=True, kw_only=True):
    """One device's share of a period; ``counted`` says whether it adds to the site total."""

    device_id: int
    code: str
    meter_role: str
    counted: bool
    energy_kwh: float
    unallocated_kwh: float
    export_kwh: float
    co2_kg: float


class SitePeriod(msgspec.Struct, frozen=True, kw_only=True):
    """A site's figures for one local day, week, month or year."""

    start_utc: datetime
    end_utc: datetime
    start_local: datetime  # with the UTC offset in force then
    hours: int  # 23 or 25 on a DST day
    basis: Basis
    energy_kwh: float  # allocated to hours
    unallocated_kwh: float  # counter energy seen across data gaps
    total_kwh: float  # energy_kwh + unallocated_kwh: what was consumed
    export_kwh: float
    co2_kg: float  # location-based
    coverage: float  # mean over counted devices and the period's hours
    factor_sets: tuple[str, ...]  # more than one means mixed sets: recompute with rollup
    emission_factor_ids: tuple[int, ...]
    hours_without_factor: int  # counted device-hours with energy but no factor
    sub_metered_kwh: float  # what the sub-meters saw (breakdown only)
    unmetered_kwh: float  # main total minus sub-meters: consumption no sub-meter saw
    scope2: Scope2
    devices: tuple[DeviceTotal, ...]


def site_basis(devices: Iterable[SiteDevice]) -> Basis:
    """Which devices give the site's total: its main meters, else its standalone devices."""
    roles = {d.meter_role for d in devices}
    if "main" in roles:
        return "main"
    return "standalone" if "standalone" in roles else "none"


def site_totals(
    devices: Sequence[SiteDevice],
    rows: Iterable[DeviceHour],
    *,
    tz: str,
    period: Period,
    start: datetime,
    end: datetime,
    contracts: Iterable[ContractPeriod] = (),
) -> list[SitePeriod]:
    """Figures per ``period`` of the site, for every period overlapping [start, end), in order."""
    basis = site_basis(devices)
    by_id = {d.id: d for d in devices}
    counted_ids = {d.id for d in devices if d.meter_role == basis}
    bounds = list(iter_periods_utc(period, start, end, tz))
    if not bounds:
        return []
    index = {b[0]: i for i, b in enumerate(bounds)}
    per_period: list[dict[int, list[DeviceHour]]] = [{} for _ in bounds]
    for row in rows:
        if row.device_id not in by_id:
            continue
        hour = row.hour_start.astimezone(UTC)
        if not bounds[0][0] <= hour < bounds[-1][1]:
            continue
        key = bucket_start_local(hour, period, tz).astimezone(UTC)
        per_period[index[key]].setdefault(row.device_id, []).append(row)
    contract_list = list(contracts)
    return [
        _period(bounds[i], per_period[i], devices, counted_ids, basis, tz, period, contract_list)
        for i in range(len(bounds))
    ]


def _period(
    bound: tuple[datetime, datetime],
    rows_by_device: dict[int, list[DeviceHour]],
    devices: Sequence[SiteDevice],
    counted_ids: set[int],
    basis: Basis,
    tz: str,
    period: Period,
    contracts: list[ContractPeriod],
) -> SitePeriod:
    start_utc, end_utc = bound
    hours = (end_utc - start_utc) // _HOUR
    totals: list[DeviceTotal] = []
    factor_sets: set[str] = set()
    factor_ids: set[int] = set()
    without_factor = 0
    coverage_sum: list[float] = []
    for device in devices:
        rows = rows_by_device.get(device.id, [])
        counted = device.id in counted_ids
        totals.append(
            DeviceTotal(
                device_id=device.id,
                code=device.code,
                meter_role=device.meter_role,
                counted=counted,
                energy_kwh=math.fsum(r.energy_kwh for r in rows),
                unallocated_kwh=math.fsum(r.unallocated_kwh for r in rows),
                export_kwh=math.fsum(r.export_kwh for r in rows),
                co2_kg=math.fsum(r.co2_kg for r in rows),
            )
        )
        if not counted:
            continue
        coverage_sum.extend(r.coverage for r in rows)
        for r in rows:
            if r.factor_set is not None:
                factor_sets.add(r.factor_set)
            if r.emission_factor_id is not None:
                factor_ids.add(r.emission_factor_id)
            elif r.energy_kwh + r.unallocated_kwh > 0:
                without_factor += 1
    counted_totals = [t for t in totals if t.counted]
    energy = math.fsum(t.energy_kwh for t in counted_totals)
    unallocated = math.fsum(t.unallocated_kwh for t in counted_totals)
    co2 = math.fsum(t.co2_kg for t in counted_totals)
    sub_metered = math.fsum(
        t.energy_kwh + t.unallocated_kwh for t in totals if t.meter_role == "sub"
    )
    slots = hours * len(counted_totals)
    return SitePeriod(
        start_utc=start_utc,
        end_utc=end_utc,
        start_local=bucket_start_local(start_utc, period, tz),
        hours=hours,
        basis=basis,
        energy_kwh=energy,
        unallocated_kwh=unallocated,
        total_kwh=energy + unallocated,
        export_kwh=math.fsum(t.export_kwh for t in counted_totals),
        co2_kg=co2,
        coverage=math.fsum(coverage_sum) / slots if slots else 0.0,
        factor_sets=tuple(sorted(factor_sets)),
        emission_factor_ids=tuple(sorted(factor_ids)),
        hours_without_factor=without_factor,
        sub_metered_kwh=sub_metered,
        unmetered_kwh=(energy + unallocated - sub_metered) if basis == "main" else 0.0,
        scope2=market_based_scope2(
            energy + unallocated, co2, contracted_kwh_in(contracts, start_utc, end_utc, tz)
        ),
        devices=tuple(totals),
    )
