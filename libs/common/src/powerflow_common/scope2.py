"""Market-based Scope 2 from recorded renewable contracts (pure).

A contract (PPA, REC, green tariff) covers a range of site-local days, inclusive of both ends;
its kWh are spread evenly over that time, so a reporting period gets the share it overlaps.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec

from powerflow_common.periods import validate_timezone

__all__ = ["ContractPeriod", "Scope2", "contracted_kwh_in", "market_based_scope2"]

NO_CONTRACTS_NOTE = "no contractual instruments: market-based equals location-based"


class ContractPeriod(msgspec.Struct, frozen=True, kw_only=True):
    """A renewable_contracts row: kWh contracted for site-local days first..last inclusive."""

    period_start: date
    period_end: date
    energy_kwh: float
    instrument: str


class Scope2(msgspec.Struct, frozen=True, kw_only=True):
    """Location- and market-based Scope 2 of one period, with a note saying how."""

    location_kwh: float
    location_co2_kg: float
    contracted_kwh: float  # the contracts' share of this period
    covered_kwh: float  # consumption matched by contracts (<= location_kwh)
    residual_kwh: float
    market_co2_kg: float
    note: str


def contracted_kwh_in(
    contracts: Iterable[ContractPeriod], start: datetime, end: datetime, tz: str
) -> float:
    """The kWh of ``contracts`` that fall in the UTC instants [start, end), pro rata by time."""
    zone = ZoneInfo(validate_timezone(tz))
    total = 0.0
    for contract in contracts:
        if contract.period_end < contract.period_start or contract.energy_kwh <= 0:
            continue
        c_start = _local_midnight(contract.period_start, zone)
        c_end = _local_midnight(contract.period_end + timedelta(days=1), zone)
        overlap = min(end, c_end) - max(start, c_start)
        if overlap > timedelta(0):
            total += contract.energy_kwh * (overlap / (c_end - c_start))
    return total


def market_based_scope2(
    location_kwh: float, location_co2_kg: float, contracted_kwh: float
) -> Scope2:
    """Market-based CO2: consumption not covered by contracts, at the period's own grid factors.

    Contracted kWh beyond consumption count as zero, never negative.
    """
    if location_kwh < 0 or location_co2_kg < 0 or contracted_kwh < 0:
        raise ValueError("kWh, kg and contracted kWh must not be negative")
    if contracted_kwh == 0:
        return Scope2(
            location_kwh=location_kwh,
            location_co2_kg=location_co2_kg,
            contracted_kwh=0.0,
            covered_kwh=0.0,
            residual_kwh=location_kwh,
            market_co2_kg=location_co2_kg,
            note=NO_CONTRACTS_NOTE,
        )
    covered = min(location_kwh, contracted_kwh)
    residual = location_kwh - covered
    # The residual is charged at the hours' own (location) factors, pro rata: the GHG Protocol
    # prefers a residual-mix factor, and without one the grid average is the accepted fallback.
    market = 0.0 if location_kwh == 0 else location_co2_kg * (residual / location_kwh)
    return Scope2(
        location_kwh=location_kwh,
        location_co2_kg=location_co2_kg,
        contracted_kwh=contracted_kwh,
        covered_kwh=covered,
        residual_kwh=residual,
        market_co2_kg=market,
        note=(
            f"{covered:g} kWh covered by contracted renewable electricity (of "
            f"{contracted_kwh:g} kWh contracted for the period); remaining {residual:g} kWh at "
            "the grid-average factors of its hours (no residual-mix factor)"
        ),
    )


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    # In UTC: differences of datetimes sharing a ZoneInfo are wall-clock, blind to DST.
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
