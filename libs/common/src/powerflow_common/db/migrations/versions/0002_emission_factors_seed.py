"""Seed the emission factors; record each hour's factor set and unallocated export.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 09:00:00

The rows are literal copies of ``powerflow_common.carbon.SEED_FACTORS`` with explicit ids, so
this migration never changes when code does. A new factor belongs in a new migration.
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_GIR = "Greenhouse Gas Inventory and Research Center of Korea (GIR), "
_DESNZ = "UK Government GHG Conversion Factors for Company Reporting (DESNZ)"

SEED_ROWS: list[dict[str, object]] = [
    {
        "id": 1,
        "factor_set": "original",
        "region": "KR",
        "valid_from": None,
        "valid_to": None,
        "kg_co2e_per_kwh": 0.478,
        "source": "powerflow prototype (0.478 kgCO2/kWh)",
        "method": "location",
    },
    {
        "id": 2,
        "factor_set": "kr-gir",
        "region": "KR",
        "valid_from": None,
        "valid_to": date(2020, 1, 1),
        "kg_co2e_per_kwh": 0.4781,
        "source": _GIR + "national grid emission factor approved 2021",
        "method": "location",
    },
    {
        "id": 3,
        "factor_set": "kr-gir",
        "region": "KR",
        "valid_from": date(2020, 1, 1),
        "valid_to": date(2023, 1, 1),
        "kg_co2e_per_kwh": 0.4541,
        "source": _GIR + "national grid emission factor, 2020-2022 average (published 2025)",
        "method": "location",
    },
    {
        "id": 4,
        "factor_set": "kr-gir",
        "region": "KR",
        "valid_from": date(2023, 1, 1),
        "valid_to": None,
        "kg_co2e_per_kwh": 0.4173,
        "source": _GIR + "national grid emission factor (published December 2025)",
        "method": "location",
    },
    {
        "id": 5,
        "factor_set": "uk-desnz",
        "region": "GB",
        "valid_from": date(2024, 1, 1),
        "valid_to": date(2025, 1, 1),
        "kg_co2e_per_kwh": 0.20705,
        "source": f"{_DESNZ} 2024, UK electricity (generation)",
        "method": "location",
    },
    {
        "id": 6,
        "factor_set": "uk-desnz",
        "region": "GB",
        "valid_from": date(2025, 1, 1),
        "valid_to": None,
        "kg_co2e_per_kwh": 0.177,
        "source": f"{_DESNZ} 2025, UK electricity (generation)",
        "method": "location",
    },
    {
        "id": 7,
        "factor_set": "us-eia",
        "region": "US",
        "valid_from": date(2022, 1, 1),
        "valid_to": None,
        "kg_co2e_per_kwh": 0.3901,
        "source": "U.S. EIA, CO2 per kWh of U.S. utility-scale generation, 2022 "
        "(0.86 lb CO2/kWh; CO2 only)",
        "method": "location",
    },
    {
        "id": 8,
        "factor_set": "de-uba",
        "region": "DE",
        "valid_from": date(2023, 1, 1),
        "valid_to": None,
        "kg_co2e_per_kwh": 0.380,
        "source": "Umweltbundesamt (UBA), CO2 emission factor of the German electricity mix, "
        "2023 estimate (380 g CO2/kWh; CO2 only)",
        "method": "location",
    },
]


def upgrade() -> None:
    factors = sa.table(
        "emission_factors",
        sa.column("id", sa.Integer()),
        sa.column("factor_set", sa.String(32)),
        sa.column("region", sa.String(16)),
        sa.column("valid_from", sa.Date()),
        sa.column("valid_to", sa.Date()),
        sa.column("kg_co2e_per_kwh", sa.Float(precision=53)),
        sa.column("source", sa.String(255)),
        sa.column("method", sa.String(16)),
    )
    op.bulk_insert(factors, SEED_ROWS)
    # The set an hour's co2_kg was computed with, so no total mixes sets silently.
    with op.batch_alter_table("hourly_stats") as batch:
        batch.add_column(sa.Column("factor_set", sa.String(length=32), nullable=True))
        batch.add_column(
            sa.Column(
                "unallocated_export_kwh",
                sa.Float(precision=53),
                nullable=False,
                server_default=sa.text("0"),
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("hourly_stats") as batch:
        batch.drop_column("unallocated_export_kwh")
        batch.drop_column("factor_set")
    ids: sa.BindParameter[list[object]] = sa.bindparam(
        "ids", [row["id"] for row in SEED_ROWS], expanding=True
    )
    op.execute(
        sa.text(
            "UPDATE hourly_stats SET emission_factor_id = NULL WHERE emission_factor_id IN :ids"
        ).bindparams(ids)
    )
    op.execute(sa.text("DELETE FROM emission_factors WHERE id IN :ids").bindparams(ids))
