"""Which devices count towards a total, where each hour belongs, and Scope 2 (pure).

Every total powerflow shows (API statistics, the dashboard summary, CSV exports, ESG report
facts) is decided here, and loaded by ``powerflow_common.queries``, so two screens never
disagree. The rules, in ``docs/energy.md``:

- **Placement history.** A device sits on a site (or on none) with a meter role from a
  moment on (``device_sites.valid_from``). Each hourly bucket belongs to the placement in
  force at the hour's start, so a device moved to another site keeps its past on the old
  one. A device's earliest placement reaches back to the beginning of time: hours stored
  before anyone placed it still belong somewhere.
- **Which devices count.** Per site and instant: the main meters when the site has one
  then, else its standalone devices; sub-meters never (they sit downstream of a main meter
  and would count twice). Devices without a site form one pseudo-site, *unassigned*, under
  the same rule: a site-less main meter and a site-less standalone plug are the same
  situation as on a site (the plug is most likely behind that meter), and a sub-meter is
  downstream of something by definition.
- **Admission.** Only admitted devices exist for a total. A device first seen on an open
  listener (or over HTTP) waits, its readings and hourly rows kept, until an operator
  admits it; while it waits it neither counts nor changes which of its site's devices count
  (a waiting main meter would otherwise silence the site's standalone plugs). Admission is
  for the device's whole history: once admitted, its earlier hours count too (the operator
  admits a meter because its readings are wanted), and the hourly rows already exist, so
  nothing is recomputed. A device asked for by itself shows its own figures either way:
  that is not a total.
- **Scope 2.** Location-based CO2 is what each hour stored (its import kWh, allocated and
  unallocated, times the factor of its region). Market-based subtracts renewable contracts
  per site: a contract covers site-local days (inclusive) and its kWh are spread evenly
  over them in *that site's* timezone; what one site contracted never covers another
  site's consumption (nor the unassigned devices'). The uncovered rest is charged at the
  hours' own factors, pro rata.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Literal
from zoneinfo import ZoneInfo

from powerflow_common.periods import validate_timezone

__all__ = [
    "BEGINNING",
    "END_OF_TIME",
    "METER_ROLES",
    "NO_CONTRACTS_NOTE",
    "UNASSIGNED",
    "Basis",
    "ContractPeriod",
    "Placement",
    "Scope2",
    "SiteEnergy",
    "Span",
    "contracted_by_site",
    "contracted_kwh_in",
    "counted_groups",
    "market_based_scope2",
    "placement_at",
    "scope2_by_site",
    "site_basis",
    "spans",
]

Basis = Literal["main", "standalone", "none"]
METER_ROLES = ("main", "sub", "standalone")
# The pseudo-site of devices that have none: a key like a site id, never a real one.
UNASSIGNED: int | None = None
# Open ends of a placement; SQL omits a bound that is open.
BEGINNING = datetime.min.replace(tzinfo=UTC)
END_OF_TIME = datetime.max.replace(tzinfo=UTC)
NO_CONTRACTS_NOTE = "no contractual instruments: market-based equals location-based"


@dataclass(frozen=True, slots=True)
class Placement:
    """A device's site (None: unassigned) and meter role from ``valid_from`` (UTC) on.

    ``admitted``: an operator admitted the device (for its whole history); a waiting device
    is left out of every total.
    """

    device_id: int
    site_id: int | None
    meter_role: str
    valid_from: datetime
    admitted: bool = True


@dataclass(frozen=True, slots=True)
class Span:
    """Over UTC [start, end) a device sat on ``site_id`` as ``meter_role``; counted or not."""

    device_id: int
    site_id: int | None
    meter_role: str
    counted: bool
    start: datetime
    end: datetime

    def covers(self, hour_start: datetime) -> bool:
        return self.start <= hour_start < self.end


def site_basis(roles: Iterable[str]) -> Basis:
    """Which devices give a site's total: its main meters, else its standalone devices."""
    present = set(roles)
    if "main" in present:
        return "main"
    return "standalone" if "standalone" in present else "none"


def spans(
    placements: Iterable[Placement],
    *,
    start: datetime = BEGINNING,
    end: datetime = END_OF_TIME,
    every_device_counts: bool = False,
) -> list[Span]:
    """Each device's placements over [start, end), marked counted by the site rule.

    The rule is applied among the placements given (a report on a list of devices applies it
    within that list). Waiting (not admitted) devices get no span at all: they are outside
    every total. ``every_device_counts`` is for a single device asked for by itself: it is
    what was asked for, whatever its role or admission.
    """
    by_device: dict[int, list[Placement]] = defaultdict(list)
    for p in placements:
        if p.meter_role not in METER_ROLES:
            raise ValueError(f"unknown meter role {p.meter_role!r} of device {p.device_id}")
        if not (p.admitted or every_device_counts):
            continue
        by_device[p.device_id].append(p)
    # Each device's own pieces, the earliest reaching back to the beginning of time.
    pieces: list[tuple[Placement, datetime, datetime]] = []
    for history in by_device.values():
        history.sort(key=lambda p: p.valid_from)
        bounds = [BEGINNING, *(p.valid_from for p in history[1:]), END_OF_TIME]
        for p, (lo, hi) in zip(history, pairwise(bounds), strict=True):
            lo, hi = max(lo, start), min(hi, end)
            if lo < hi:
                pieces.append((p, lo, hi))
    # Who counts changes only where some placement changes: cut time there.
    cuts = sorted({start, end, *(t for _, lo, hi in pieces for t in (lo, hi))})
    out: list[Span] = []
    for lo, hi in pairwise(cuts):
        live = [p for p, p_lo, p_hi in pieces if p_lo <= lo and hi <= p_hi]
        roles: dict[int | None, set[str]] = defaultdict(set)
        for p in live:
            roles[p.site_id].add(p.meter_role)
        basis = {site: site_basis(r) for site, r in roles.items()}
        for p in live:
            counted = every_device_counts or p.meter_role == basis[p.site_id]
            out.append(Span(p.device_id, p.site_id, p.meter_role, counted, lo, hi))
    return _merged(out)


def _merged(pieces: list[Span]) -> list[Span]:
    """Adjacent spans of one device with the same site, role and counting joined into one."""
    pieces.sort(key=lambda s: (s.device_id, s.start))
    out: list[Span] = []
    for s in pieces:
        last = out[-1] if out else None
        if (
            last is not None
            and last.device_id == s.device_id
            and last.end == s.start
            and (last.site_id, last.meter_role, last.counted)
            == (s.site_id, s.meter_role, s.counted)
        ):
            out[-1] = Span(s.device_id, s.site_id, s.meter_role, s.counted, last.start, s.end)
        else:
            out.append(s)
    return out


def placement_at(device_spans: Sequence[Span], device_id: int, hour_start: datetime) -> Span | None:
    """The span that holds ``device_id``'s hour, or None when it is outside the scope."""
    for s in device_spans:
        if s.device_id == device_id and s.covers(hour_start):
            return s
    return None


def counted_groups(
    scope_spans: Iterable[Span], *, counted_only: bool = True
) -> list[tuple[datetime, datetime, tuple[int, ...]]]:
    """The spans as (start, end, device ids) groups: what SQL needs to select their hours.

    A scope without history is one group: every counted device over all time.
    """
    groups: dict[tuple[datetime, datetime], set[int]] = defaultdict(set)
    for s in scope_spans:
        if s.counted or not counted_only:
            groups[(s.start, s.end)].add(s.device_id)
    return [(lo, hi, tuple(sorted(ids))) for (lo, hi), ids in sorted(groups.items())]


# --- Scope 2 -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContractPeriod:
    """A renewable_contracts row: kWh contracted for site-local days first..last inclusive."""

    period_start: date
    period_end: date
    energy_kwh: float
    instrument: str


@dataclass(frozen=True, slots=True)
class Scope2:
    """Location- and market-based Scope 2 of one period, with a note saying how."""

    location_kwh: float
    location_co2_kg: float
    contracted_kwh: float  # the contracts' share of this period
    covered_kwh: float  # consumption matched by contracts (<= location_kwh)
    residual_kwh: float
    market_co2_kg: float
    note: str


@dataclass(frozen=True, slots=True)
class SiteEnergy:
    """One site's (or the unassigned devices') consumption in a period and its contracts' share.

    ``kwh`` is what was consumed: allocated plus unallocated import, the energy ``co2_kg``
    was computed from.
    """

    site_id: int | None
    kwh: float
    co2_kg: float
    contracted_kwh: float = 0.0


def contracted_kwh_in(
    contracts: Iterable[ContractPeriod], start: datetime, end: datetime, tz: str
) -> float:
    """The kWh of ``contracts`` that fall in the UTC instants [start, end), pro rata by time.

    Days are the site's own (``tz``): a contract for 1 March in Seoul starts at 15:00 UTC
    on 28 February.
    """
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
    """Market-based CO2 of one site: consumption not covered by its contracts, pro rata.

    Contracted kWh beyond consumption count as zero, never negative.
    """
    return scope2_by_site([SiteEnergy(None, location_kwh, location_co2_kg, contracted_kwh)])


def scope2_by_site(parts: Iterable[SiteEnergy]) -> Scope2:
    """Market-based Scope 2 of several sites: each site's contracts cover only its own kWh."""
    terms: list[tuple[float, float, float, float, float]] = []
    for part in parts:
        if part.kwh < 0 or part.co2_kg < 0 or part.contracted_kwh < 0:
            raise ValueError("kWh, kg and contracted kWh must not be negative")
        site_covered = min(part.kwh, part.contracted_kwh)
        residual = part.kwh - site_covered
        # The residual is charged at the hours' own (location) factors, pro rata: the GHG
        # Protocol prefers a residual-mix factor, and without one the grid average is the
        # accepted fallback.
        site_market = 0.0 if part.kwh == 0 else part.co2_kg * (residual / part.kwh)
        terms.append((part.kwh, part.co2_kg, part.contracted_kwh, site_covered, site_market))
    kwh = math.fsum(t[0] for t in terms)
    co2 = math.fsum(t[1] for t in terms)
    contracted = math.fsum(t[2] for t in terms)
    covered = math.fsum(t[3] for t in terms)
    market = math.fsum(t[4] for t in terms)
    if contracted == 0:
        return Scope2(kwh, co2, 0.0, 0.0, kwh, co2, NO_CONTRACTS_NOTE)
    residual = kwh - covered
    return Scope2(
        location_kwh=kwh,
        location_co2_kg=co2,
        contracted_kwh=contracted,
        covered_kwh=covered,
        residual_kwh=residual,
        market_co2_kg=market,
        note=(
            f"{covered:g} kWh covered by contracted renewable electricity (of "
            f"{contracted:g} kWh contracted for the period, each site's contracts spread over "
            f"its own local days and covering only its own consumption); remaining "
            f"{residual:g} kWh at the grid-average factors of its hours (no residual-mix factor)"
        ),
    )


def contracted_by_site(
    contracts: Mapping[int, tuple[str, Sequence[ContractPeriod]]],
    start: datetime,
    end: datetime,
) -> dict[int | None, float]:
    """Each site's contracted kWh in [start, end), spread in the site's own timezone."""
    return {
        site_id: contracted_kwh_in(periods, start, end, tz)
        for site_id, (tz, periods) in contracts.items()
    }


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    # In UTC: differences of datetimes sharing a ZoneInfo are wall-clock, blind to DST.
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
