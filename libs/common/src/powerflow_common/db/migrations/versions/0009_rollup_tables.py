"""The 15-minute table beside hourly_stats, and the daily per-site cache of the totals.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 18:30:00

- ``quarter_hour_stats``: hourly_stats by the quarter hour, kept by the aggregator with each
  hour (the 15-minute chart resolution reads it instead of raw readings).
- ``daily_site_stats``: each site's local days as the totals sum them from hourly_stats, and
  ``daily_site_state``: for which inputs (a fingerprint) a site's days were built
  (powerflow_common.daily_site).

Backfill. The days need none: a site without a ``daily_site_state`` row is never served from
the cache; its first daily chart is computed from hourly_stats as before and builds the cache
(one grouped query over the site's hours). The quarters come from raw readings by the energy
rules, which SQL cannot apply, so a migration does not compute them: after upgrading, run
``powerflow rollup --from <first day with readings> --to <now>``, which recomputes every hour
with readings and writes its quarters (docs/energy.md, "Quarter hours"). Until then a
15-minute chart of an older period is empty where the hour has no quarters yet.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# UTC, millisecond precision; spelled here so migrations never depend on model code.
DT = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql", "mariadb")
F = sa.Float(precision=53)

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quarter_hour_stats",
        sa.Column("device_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("quarter_start", DT, nullable=False),
        sa.Column("hour_start", DT, nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("coverage", F, nullable=False),
        sa.Column("energy_kwh", F, nullable=False),
        sa.Column("export_kwh", F, nullable=False),
        sa.Column("unallocated_kwh", F, nullable=False),
        sa.Column("unallocated_export_kwh", F, nullable=False),
        sa.Column("power_avg_w", F, nullable=True),
        sa.Column("power_min_w", F, nullable=True),
        sa.Column("power_max_w", F, nullable=True),
        sa.Column("temperature_avg_c", F, nullable=True),
        sa.Column("humidity_avg_pct", F, nullable=True),
        sa.Column("brightness_avg_lux", F, nullable=True),
        sa.Column("co2_kg", F, nullable=False),
        sa.Column("emission_factor_id", sa.Integer(), nullable=True),
        sa.Column("factor_set", sa.String(length=32), nullable=True),
        sa.Column("energy_source", sa.String(length=16), nullable=True),
        sa.Column("flags", sa.String(length=255), nullable=True),
        sa.Column("computed_at", DT, nullable=False),
        sa.ForeignKeyConstraint(["emission_factor_id"], ["emission_factors.id"]),
        sa.PrimaryKeyConstraint("device_id", "quarter_start"),
    )
    op.create_table(
        "daily_site_stats",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("day_start", DT, nullable=False),
        sa.Column("day_end", DT, nullable=False),
        sa.Column("hours", sa.Integer(), nullable=False),
        sa.Column("device_hours", sa.Integer(), nullable=False),
        sa.Column("energy_kwh", F, nullable=False),
        sa.Column("export_kwh", F, nullable=False),
        sa.Column("unallocated_kwh", F, nullable=False),
        sa.Column("co2_kg", F, nullable=False),
        sa.Column("coverage_sum", F, nullable=False),
        sa.Column("demand_sum_w", F, nullable=False),
        sa.Column("demand_hours", sa.Integer(), nullable=False),
        sa.Column("demand_max_w", F, nullable=True),
        sa.Column("sample_max_w", F, nullable=True),
        sa.Column("temperature_c_x_samples", F, nullable=False),
        sa.Column("temperature_samples", F, nullable=False),
        sa.Column("humidity_pct_x_samples", F, nullable=False),
        sa.Column("humidity_samples", F, nullable=False),
        sa.Column("brightness_lux_x_samples", F, nullable=False),
        sa.Column("brightness_samples", F, nullable=False),
        sa.Column("emission_factor_ids", sa.String(length=255), nullable=True),
        sa.Column("computed_at", DT, nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("site_id", "day"),
    )
    op.create_table(
        "daily_site_state",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("built_at", DT, nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("site_id"),
    )


def downgrade() -> None:
    op.drop_table("daily_site_state")
    op.drop_table("daily_site_stats")
    op.drop_table("quarter_hour_stats")
