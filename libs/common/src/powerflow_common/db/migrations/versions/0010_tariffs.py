"""Tariffs, their add-on components, each site's tariff, and seed tariffs.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 21:30:00

- ``tariffs``: versions of named tariffs (``definition`` is a
  ``powerflow_common.tariffs.TariffDefinition`` as JSON), valid for local consumption days
  [valid_from, valid_to).
- ``tariff_components``: versioned add-ons of a component set (KEPCO's climate-environment
  charge, fuel-cost adjustment, power-industry fund, VAT).
- ``site_tariffs``: which tariff a site is on and its contract power, from a month on.

The seed rows are literal, so this migration never changes when code does; a new tariff
version belongs in a new migration or is added through the API. Each row says where its
figures come from, and what could not be checked against KEPCO's own tables in this session.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

DT = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql", "mariadb")
F = sa.Float(precision=53)

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# KEPCO's time bands (KEPCO, "Electricity Tariff Structure", home.kepco.co.kr English pages,
# ENFBHP00109): off-peak 23:00-09:00 all year; summer and spring/autumn on-peak 10-12 and
# 13-17, mid-peak 09-10, 12-13, 17-23; winter on-peak 10-12, 17-20 and 22-23, mid-peak 09-10,
# 12-17, 20-22.
_O, _M, _P = "off_peak", "mid_peak", "on_peak"
_SUMMER_HOURS = [_O] * 9 + [_M] + [_P] * 2 + [_M] + [_P] * 4 + [_M] * 6 + [_O]
_WINTER_HOURS = [_O] * 9 + [_M] + [_P] * 2 + [_M] * 5 + [_P] * 3 + [_M] * 2 + [_P] + [_O]
assert len(_SUMMER_HOURS) == len(_WINTER_HOURS) == 24


def _kepco(
    summer: tuple[float, float, float],
    spring_autumn: tuple[float, float, float],
    winter: tuple[float, float, float],
    demand_per_kw: float,
) -> dict[str, Any]:
    """A KEPCO (을) time-of-use definition: rates as (off-peak, mid-peak, on-peak) won/kWh."""

    def rates(r: tuple[float, float, float]) -> dict[str, float]:
        return {_O: r[0], _M: r[1], _P: r[2]}

    return {
        "currency": "KRW",
        "seasons": [
            {"name": "summer", "months": [6, 7, 8], "hours": _SUMMER_HOURS, "rates": rates(summer)},
            {
                "name": "spring_autumn",
                "months": [3, 4, 5, 9, 10],
                "hours": _SUMMER_HOURS,
                "rates": rates(spring_autumn),
            },
            {
                "name": "winter",
                "months": [11, 12, 1, 2],
                "hours": _WINTER_HOURS,
                "rates": rates(winter),
            },
        ],
        # Saturdays: on-peak billed as mid-peak; Sundays and KEPCO's holidays: off-peak all
        # day. Holidays: Korea's public holidays (the `holidays` library) without substitute
        # days, election days, Labour Day and Constitution Day, which KEPCO's list (시행세칙)
        # is not known to name: see docs/architecture.md.
        "days": {
            "saturday": {_P: _M},
            "sunday_band": _O,
            "holiday_band": _O,
            "holiday_country": "KR",
            "holiday_exclude": ["Alternative holiday", "Election Day", "Labor Day", "Constitution"],
        },
        "fixed_per_day": 0.0,
        "fixed_per_month": 0.0,
        "demand": {
            "charge_per_kw": demand_per_kw,
            "ratchet_months": [12, 1, 2, 7, 8, 9],
            "ratchet_lookback_months": 12,
            "min_fraction_of_contract": 0.3,
            "excluded_bands": [_O],
        },
        "component_set": "KR-KEPCO",
        "rounding": "kepco",
    }


_KEPCO_SOURCE = (
    "KEPCO 전기요금표 (종합), version effective 2026-06-01, as transcribed in a public "
    "repository's tariff table (TARIFF_VERSION '2026-06-01'); the 일반용(을) figures agree with "
    "a second public transcription. Not checked against KEPCO's own site in this session: "
    "verify at cyber.kepco.co.kr before relying on it."
)


def _flat(currency: str, rate: float, fixed_per_day: float = 0.0) -> dict[str, Any]:
    return {
        "currency": currency,
        "seasons": [
            {
                "name": "all_year",
                "months": list(range(1, 13)),
                "hours": ["flat"] * 24,
                "rates": {"flat": rate},
            }
        ],
        "fixed_per_day": fixed_per_day,
    }


SEED_TARIFFS: list[dict[str, Any]] = [
    {
        "id": 1,
        "name": "kepco-general-b-high-a-ii",
        "label": "KEPCO 일반용(을) 고압A 선택Ⅱ",
        "valid_from": date(2026, 6, 1),
        "valid_to": None,
        "currency": "KRW",
        "definition": _kepco(
            (87.3, 140.2, 222.3), (87.3, 109.8, 140.5), (94.3, 140.4, 197.9), 8320.0
        ),
        "source": _KEPCO_SOURCE,
    },
    {
        "id": 2,
        "name": "kepco-industrial-b-high-a-ii",
        "label": "KEPCO 산업용(을) 고압A 선택Ⅱ",
        "valid_from": date(2026, 6, 1),
        "valid_to": None,
        "currency": "KRW",
        "definition": _kepco(
            (116.0, 163.8, 229.0), (116.0, 133.4, 150.9), (123.0, 164.0, 204.6), 8320.0
        ),
        "source": _KEPCO_SOURCE,
    },
    # Other countries: illustrative flat sets, each with its source; replace with the
    # site's own contract.
    {
        "id": 3,
        "name": "gb-price-cap-flat",
        "label": "GB default tariff price cap, electricity, direct debit (flat)",
        "valid_from": date(2025, 1, 1),
        "valid_to": None,
        "currency": "GBP",
        "definition": _flat("GBP", 0.2486, 0.6097),
        "source": "Ofgem energy price cap, 1 January - 31 March 2025, GB average electricity "
        "unit rate 24.86 p/kWh and standing charge 60.97 p/day (direct debit, incl. VAT); "
        "from memory of Ofgem's announcement, not re-checked in this session",
    },
    {
        "id": 4,
        "name": "us-average-commercial-flat",
        "label": "US average commercial retail price (flat)",
        "valid_from": date(2024, 1, 1),
        "valid_to": None,
        "currency": "USD",
        "definition": _flat("USD", 0.128),
        "source": "U.S. EIA, average retail price of electricity to the commercial sector, "
        "2024, about 12.8 cents/kWh; from memory of EIA's Electric Power Monthly, not "
        "re-checked in this session",
    },
]

_FUND = (
    "전력산업기반기금, a percentage of the electricity charge (전기사업법 시행령 제36조, amended "
    "2024: 3.7 % -> 3.2 % -> 2.7 %; Newspim 2024-06-28 and etrans.or.kr on the amendment): "
)
# The fund's 2001 start date is the fund's introduction year (etrans.or.kr), its first month
# assumed; the 3.7 % is the rate the amendment lowered (the rate's own history before is not
# modelled).

# Add-ons of KEPCO's bill (component set KR-KEPCO).
SEED_COMPONENTS: list[dict[str, Any]] = [
    {
        "id": 1,
        "component_set": "KR-KEPCO",
        "name": "climate_environment",
        "kind": "per_kwh",
        "rate": 7.3,
        "valid_from": date(2022, 4, 1),
        "valid_to": date(2023, 1, 1),
        "source": "KEPCO, Electricity Tariff Structure (home.kepco.co.kr, English): "
        "Climate Change & Environmental Charge 7.3 KRW/kWh from 2022-04-01",
    },
    {
        "id": 2,
        "component_set": "KR-KEPCO",
        "name": "climate_environment",
        "kind": "per_kwh",
        "rate": 9.0,
        "valid_from": date(2023, 1, 1),
        "valid_to": None,
        "source": "9.0 KRW/kWh from 2023-01-01 as used by the kwh_to_won calculator "
        "(github.com/dugurs/kwh_to_won, release v2025.02.15); KEPCO's own notice not read",
    },
    {
        "id": 3,
        "component_set": "KR-KEPCO",
        "name": "fuel_cost_adjustment",
        "kind": "per_kwh",
        "rate": 0.0,
        "valid_from": date(2022, 4, 1),
        "valid_to": date(2022, 7, 1),
        "source": "KEPCO, Electricity Tariff Structure (home.kepco.co.kr, English): "
        "Fuel Cost Pass-Through Adjustment Rate 0 KRW/kWh from 2022-04-01",
    },
    {
        "id": 4,
        "component_set": "KR-KEPCO",
        "name": "fuel_cost_adjustment",
        "kind": "per_kwh",
        "rate": 5.0,
        "valid_from": date(2022, 7, 1),
        "valid_to": None,
        "source": "+5 KRW/kWh (the quarterly cap) as used by the kwh_to_won calculator "
        "(github.com/dugurs/kwh_to_won, release v2025.02.15); KEPCO sets it each quarter: "
        "add a version when it changes",
    },
    {
        "id": 5,
        "component_set": "KR-KEPCO",
        "name": "power_industry_fund",
        "kind": "percent_of_bill",
        "rate": 3.7,
        "valid_from": date(2001, 4, 1),
        "valid_to": date(2024, 7, 1),
        "source": _FUND + "3.7 % until 30 June 2024",
    },
    {
        "id": 6,
        "component_set": "KR-KEPCO",
        "name": "power_industry_fund",
        "kind": "percent_of_bill",
        "rate": 3.2,
        "valid_from": date(2024, 7, 1),
        "valid_to": date(2025, 7, 1),
        "source": _FUND + "3.2 % for electricity used from 1 July 2024",
    },
    {
        "id": 7,
        "component_set": "KR-KEPCO",
        "name": "power_industry_fund",
        "kind": "percent_of_bill",
        "rate": 2.7,
        "valid_from": date(2025, 7, 1),
        "valid_to": None,
        "source": _FUND + "2.7 % for electricity used from 1 July 2025",
    },
    {
        "id": 8,
        "component_set": "KR-KEPCO",
        "name": "vat",
        "kind": "vat",
        "rate": 10.0,
        "valid_from": date(1977, 7, 1),
        "valid_to": None,
        "source": "Korean value-added tax, 10 % (부가가치세법)",
    },
]


def upgrade() -> None:
    op.create_table(
        "tariffs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=128), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=512), nullable=False),
        sa.Column("created_at", DT, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", "valid_from", name="uq_tariff_version"),
    )
    op.create_table(
        "tariff_components",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("component_set", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("rate", F, nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("source", sa.String(length=512), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("component_set", "name", "valid_from", name="uq_component_version"),
    )
    op.create_table(
        "site_tariffs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("tariff_name", sa.String(length=64), nullable=False),
        sa.Column("contract_power_kw", F, nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("recorded_at", DT, nullable=False),
        sa.Column("recorded_by", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("site_id", "valid_from", name="uq_site_tariff_from"),
    )
    tariffs = sa.table(
        "tariffs",
        sa.column("id", sa.Integer()),
        sa.column("name", sa.String(64)),
        sa.column("label", sa.String(128)),
        sa.column("valid_from", sa.Date()),
        sa.column("valid_to", sa.Date()),
        sa.column("currency", sa.String(3)),
        sa.column("definition", sa.JSON()),
        sa.column("source", sa.String(512)),
        sa.column("created_at", DT),
    )
    components = sa.table(
        "tariff_components",
        sa.column("id", sa.Integer()),
        sa.column("component_set", sa.String(32)),
        sa.column("name", sa.String(64)),
        sa.column("kind", sa.String(16)),
        sa.column("rate", F),
        sa.column("valid_from", sa.Date()),
        sa.column("valid_to", sa.Date()),
        sa.column("source", sa.String(512)),
    )
    now = datetime.now(UTC).replace(tzinfo=None)
    op.bulk_insert(tariffs, [{**row, "created_at": now} for row in SEED_TARIFFS])
    op.bulk_insert(components, SEED_COMPONENTS)


def downgrade() -> None:
    op.drop_table("site_tariffs")
    op.drop_table("tariff_components")
    op.drop_table("tariffs")
