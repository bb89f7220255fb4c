"""Baselines and savings: outdoor sensors, imported daily outdoor temperatures, baselines.

Revision ID: 0012
Revises: 0009
Create Date: 2026-11-29 21:30:00

- ``outdoor_sensors``: devices whose temperature is their site's outdoor series.
- ``outdoor_temperature_days``: a site's daily mean outdoor temperature from a weather CSV
  (the KMA's ASOS files); a device's series is derived from hourly_stats when read.
- ``baselines``: a fitted model (kind, coefficients, statistics) of a site's baseline
  period, fixed so savings reports cite one model (powerflow_common.baselines).

New tables only: nothing to backfill.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

DT = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql", "mariadb")
F = sa.Float(precision=53)

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outdoor_sensors",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("marked_at", DT, nullable=False),
        sa.Column("marked_by", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("device_id"),
    )
    op.create_table(
        "outdoor_temperature_days",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("temperature_mean_c", F, nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("imported_at", DT, nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("site_id", "day"),
    )
    op.create_table(
        "baselines",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("temperature_source", sa.String(length=16), nullable=False),
        sa.Column("model_kind", sa.String(length=16), nullable=False),
        sa.Column("coefficients", sa.JSON(), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.Column("fitted_at", DT, nullable=False),
        sa.Column("fitted_by", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_baselines_site_id", "baselines", ["site_id"])


def downgrade() -> None:
    # The table goes with its indexes: MariaDB refuses to drop the site index on its own while
    # the foreign key to sites needs it.
    op.drop_table("baselines")
    op.drop_table("outdoor_temperature_days")
    op.drop_table("outdoor_sensors")
