"""Grid emission factors and Scope 2 CO2 arithmetic (pure).

A factor applies by consumption period: the factor valid on the day the electricity was used,
whatever year it was published. Sources and periods of ``SEED_FACTORS`` are in docs/energy.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Literal

import msgspec

from powerflow_common.errors import NotFound

__all__ = [
    "FACTOR_SET_KR_GIR",
    "FACTOR_SET_ORIGINAL",
    "SEED_FACTORS",
    "EmissionFactor",
    "FactorMethod",
    "FactorNotFound",
    "co2_kg",
    "market_based_co2_kg",
    "select_factor",
]

FactorMethod = Literal["location", "market"]

FACTOR_SET_ORIGINAL = "original"
FACTOR_SET_KR_GIR = "kr-gir"


class EmissionFactor(msgspec.Struct, frozen=True, kw_only=True):
    """A grid factor in kg CO2e per kWh, valid for consumption in [valid_from, valid_to).

    ``None`` bounds are open; ``id`` is 0 until the database assigns one.
    """

    id: int
    factor_set: str
    region: str
    valid_from: date | None
    valid_to: date | None
    kg_co2e_per_kwh: float
    source: str
    method: FactorMethod = "location"


class FactorNotFound(NotFound, LookupError):
    """No emission factor of the requested set and region is valid at the requested time."""

    def __init__(self, *, factor_set: str, region: str, on: date) -> None:
        self.factor_set = factor_set
        self.region = region
        self.on = on
        super().__init__(
            f"no emission factor in set {factor_set!r} for region {region!r} "
            f"valid on {on.isoformat()}"
        )


def select_factor(
    factors: Iterable[EmissionFactor],
    *,
    factor_set: str,
    region: str,
    at: datetime | date,
) -> EmissionFactor:
    """The factor of ``factor_set``/``region`` valid on the consumption date of ``at``.

    The most specific (latest ``valid_from``) wins; raises FactorNotFound when none applies.
    """
    # The calendar date is taken as ``at`` is given: pass a site-local datetime to apply the
    # factor by the site's own calendar.
    on = at.date() if isinstance(at, datetime) else at
    matching = [
        f
        for f in factors
        if f.factor_set == factor_set
        and f.region == region
        and (f.valid_from is None or f.valid_from <= on)
        and (f.valid_to is None or on < f.valid_to)
    ]
    if not matching:
        raise FactorNotFound(factor_set=factor_set, region=region, on=on)
    # Ties on valid_from go to the narrower window (earliest valid_to), then the newest row,
    # so the choice never depends on input order.
    return max(
        matching,
        key=lambda f: (
            f.valid_from or date.min,
            -(f.valid_to or date.max).toordinal(),
            f.id,
        ),
    )


def co2_kg(energy_kwh: float, factor: EmissionFactor) -> float:
    """Location-based emissions in kg CO2e of ``energy_kwh`` at ``factor``."""
    if energy_kwh < 0:
        raise ValueError(f"energy_kwh must not be negative, got {energy_kwh}")
    return energy_kwh * factor.kg_co2e_per_kwh


def market_based_co2_kg(
    location_kwh: float, contracted_renewable_kwh: float, factor: EmissionFactor
) -> tuple[float, str]:
    """Market-based Scope 2 kg CO2e: consumption not covered by renewable contracts, at ``factor``.

    Returns (co2_kg, note); contracted kWh beyond consumption count as zero, never negative.
    """
    if location_kwh < 0:
        raise ValueError(f"location_kwh must not be negative, got {location_kwh}")
    if contracted_renewable_kwh < 0:
        raise ValueError(
            f"contracted_renewable_kwh must not be negative, got {contracted_renewable_kwh}"
        )
    if contracted_renewable_kwh == 0:
        return (
            co2_kg(location_kwh, factor),
            "no contractual instruments: market-based equals location-based "
            f"({factor.factor_set}/{factor.region} {factor.kg_co2e_per_kwh} kg CO2e/kWh)",
        )
    residual_kwh = max(0.0, location_kwh - contracted_renewable_kwh)
    covered_kwh = location_kwh - residual_kwh
    note = (
        f"{covered_kwh:g} kWh covered by contracted renewable electricity "
        f"(of {contracted_renewable_kwh:g} kWh contracted); remaining {residual_kwh:g} kWh at "
        f"{factor.factor_set}/{factor.region} {factor.kg_co2e_per_kwh} kg CO2e/kWh"
    )
    if factor.method == "location":
        # GHG Protocol prefers a residual-mix factor for the uncovered part; without one the
        # grid average is the accepted fallback, and the report should say so.
        note += " (grid-average factor used; no residual-mix factor)"
    return co2_kg(residual_kwh, factor), note


_UK_DESNZ = "UK Government GHG Conversion Factors for Company Reporting (DESNZ)"

SEED_FACTORS: tuple[EmissionFactor, ...] = (
    # The prototype's single figure, kept so historical reports can be reproduced.
    EmissionFactor(
        id=0,
        factor_set=FACTOR_SET_ORIGINAL,
        region="KR",
        valid_from=None,
        valid_to=None,
        kg_co2e_per_kwh=0.478,
        source="powerflow prototype (0.478 kgCO2/kWh)",
    ),
    # Korea's national grid factors (GIR), each applied to the consumption years it
    # describes; the 2021-approved figure is also the fallback for anything earlier.
    EmissionFactor(
        id=0,
        factor_set=FACTOR_SET_KR_GIR,
        region="KR",
        valid_from=None,
        valid_to=date(2020, 1, 1),
        kg_co2e_per_kwh=0.4781,
        source="Greenhouse Gas Inventory and Research Center of Korea (GIR), "
        "national grid emission factor approved 2021",
    ),
    EmissionFactor(
        id=0,
        factor_set=FACTOR_SET_KR_GIR,
        region="KR",
        valid_from=date(2020, 1, 1),
        valid_to=date(2023, 1, 1),
        kg_co2e_per_kwh=0.4541,
        source="Greenhouse Gas Inventory and Research Center of Korea (GIR), "
        "national grid emission factor, 2020-2022 average (published 2025)",
    ),
    EmissionFactor(
        id=0,
        factor_set=FACTOR_SET_KR_GIR,
        region="KR",
        valid_from=date(2023, 1, 1),
        valid_to=None,
        kg_co2e_per_kwh=0.4173,
        source="Greenhouse Gas Inventory and Research Center of Korea (GIR), "
        "national grid emission factor (published December 2025)",
    ),
    # UK: DESNZ publishes one set per reporting (calendar) year; the latest stays open-ended
    # until the next one is added.
    EmissionFactor(
        id=0,
        factor_set="uk-desnz",
        region="GB",
        valid_from=date(2024, 1, 1),
        valid_to=date(2025, 1, 1),
        kg_co2e_per_kwh=0.20705,
        source=f"{_UK_DESNZ} 2024, UK electricity (generation)",
    ),
    EmissionFactor(
        id=0,
        factor_set="uk-desnz",
        region="GB",
        valid_from=date(2025, 1, 1),
        valid_to=None,
        kg_co2e_per_kwh=0.177,
        source=f"{_UK_DESNZ} 2025, UK electricity (generation)",
    ),
    EmissionFactor(
        id=0,
        factor_set="us-eia",
        region="US",
        valid_from=date(2022, 1, 1),
        valid_to=None,
        # 0.86 lb CO2/kWh x 0.45359237 kg/lb
        kg_co2e_per_kwh=0.3901,
        source="U.S. EIA, CO2 per kWh of U.S. utility-scale generation, 2022 "
        "(0.86 lb CO2/kWh; CO2 only)",
    ),
    EmissionFactor(
        id=0,
        factor_set="de-uba",
        region="DE",
        valid_from=date(2023, 1, 1),
        valid_to=None,
        kg_co2e_per_kwh=0.380,
        source="Umweltbundesamt (UBA), CO2 emission factor of the German electricity mix, "
        "2023 estimate (380 g CO2/kWh; CO2 only)",
    ),
)
