"""Read-side database helpers shared by the API, the reporter and the command line.

They load rows and hand them to the pure functions (``sitetotals``, ``scope2``), so every
figure is computed one way whoever asks.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select

from powerflow_common.db.models import (
    DEVICES,
    HOURLY_STATS,
    RENEWABLE_CONTRACTS,
    SITES,
)
from powerflow_common.periods import Period, iter_periods_utc
from powerflow_common.scope2 import ContractPeriod
from powerflow_common.sitetotals import DeviceHour, SiteDevice, SitePeriod, site_totals

__all__ = ["SiteNotFound", "device_hours", "site_devices", "site_energy"]

_sites = SITES
_devices = DEVICES
_stats = HOURLY_STATS
_contracts = RENEWABLE_CONTRACTS


class SiteNotFound(LookupError):
    """No site has the requested id."""


def site_devices(conn: Connection, site_id: int) -> list[SiteDevice]:
    """The devices of a site with their meter roles, by id."""
    return [
        SiteDevice(id=r.id, code=r.code, name=r.name, meter_role=r.meter_role)
        for r in conn.execute(
            select(_devices.c.id, _devices.c.code, _devices.c.name, _devices.c.meter_role)
            .where(_devices.c.site_id == site_id)
            .order_by(_devices.c.id)
        )
    ]


def device_hours(
    conn: Connection, device_ids: list[int], start_utc: datetime, end_utc: datetime
) -> list[DeviceHour]:
    """hourly_stats rows of ``device_ids`` with hour_start in [start_utc, end_utc)."""
    if not device_ids:
        return []
    return [
        DeviceHour(
            device_id=r.device_id,
            hour_start=r.hour_start,
            energy_kwh=r.energy_kwh,
            unallocated_kwh=r.unallocated_kwh,
            export_kwh=r.export_kwh,
            co2_kg=r.co2_kg,
            coverage=r.coverage,
            factor_set=r.factor_set,
            emission_factor_id=r.emission_factor_id,
        )
        for r in conn.execute(
            select(
                _stats.c.device_id,
                _stats.c.hour_start,
                _stats.c.energy_kwh,
                _stats.c.unallocated_kwh,
                _stats.c.export_kwh,
                _stats.c.co2_kg,
                _stats.c.coverage,
                _stats.c.factor_set,
                _stats.c.emission_factor_id,
            ).where(
                _stats.c.device_id.in_(device_ids),
                _stats.c.hour_start >= start_utc,
                _stats.c.hour_start < end_utc,
            )
        )
    ]


def site_energy(
    conn: Connection, site_id: int, start: datetime, end: datetime, period: Period = "day"
) -> list[SitePeriod]:
    """A site's kWh, CO2 (location- and market-based) and breakdown per local ``period``.

    Every period overlapping [start, end) (aware datetimes), cut in the site's timezone; the
    total comes from main meters when the site has any (see ``sitetotals``).
    """
    site = conn.execute(select(_sites.c.timezone).where(_sites.c.id == site_id)).first()
    if site is None:
        raise SiteNotFound(f"no site with id {site_id}")
    tz: str = site.timezone
    bounds = list(iter_periods_utc(period, start, end, tz))
    if not bounds:
        return []
    devices = site_devices(conn, site_id)
    rows = device_hours(conn, [d.id for d in devices], bounds[0][0], bounds[-1][1])
    contracts = [
        ContractPeriod(
            period_start=r.period_start,
            period_end=r.period_end,
            energy_kwh=r.energy_kwh,
            instrument=r.instrument,
        )
        for r in conn.execute(select(_contracts).where(_contracts.c.site_id == site_id))
    ]
    return site_totals(
        devices, rows, tz=tz, period=period, start=start, end=end, contracts=contracts
    )
