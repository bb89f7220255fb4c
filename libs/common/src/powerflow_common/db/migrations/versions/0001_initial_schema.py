"""Initial schema: the tables of docs/architecture.md, "Data model".

Revision ID: 0001
Revises:
Create Date: 2026-11-26 06:50:40.309652
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# UTC, millisecond precision; spelled here so migrations never depend on model code.
DT = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql", "mariadb")


revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_sha256", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", DT, nullable=False),
        sa.Column("revoked_at", DT, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_sha256"),
    )
    op.create_index(op.f("ix_api_keys_prefix"), "api_keys", ["prefix"], unique=False)
    op.create_table(
        "emission_factors",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("factor_set", sa.String(length=32), nullable=False),
        sa.Column("region", sa.String(length=16), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("kg_co2e_per_kwh", sa.Float(precision=53), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "factor_set", "region", "method", "valid_from", name="uq_factor_period"
        ),
    )
    op.create_table(
        "esg_reports",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", DT, nullable=False),
        sa.Column("updated_at", DT, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("period_start", DT, nullable=False),
        sa.Column("period_end", DT, nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("scope_ref", sa.JSON(), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("grounding", sa.JSON(), nullable=True),
        sa.Column("facts", sa.JSON(), nullable=True),
        sa.Column("html_path", sa.String(length=512), nullable=True),
        sa.Column("pdf_path", sa.String(length=512), nullable=True),
        sa.Column("markdown_path", sa.String(length=512), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_esg_reports_status"), "esg_reports", ["status"], unique=False)
    op.create_table(
        "readings",
        sa.Column("device_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("ts", DT, nullable=False),
        sa.Column("power_w", sa.Float(precision=53), nullable=True),
        sa.Column("energy_wh", sa.Float(precision=53), nullable=True),
        sa.Column("energy_export_wh", sa.Float(precision=53), nullable=True),
        sa.Column("voltage_v", sa.Float(precision=53), nullable=True),
        sa.Column("current_a", sa.Float(precision=53), nullable=True),
        sa.Column("temperature_c", sa.Float(precision=53), nullable=True),
        sa.Column("humidity_pct", sa.Float(precision=53), nullable=True),
        sa.Column("brightness_lux", sa.Float(precision=53), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("firmware", sa.String(length=64), nullable=True),
        sa.Column("received_at", DT, nullable=False),
        sa.PrimaryKeyConstraint("device_id", "ts"),
    )
    op.create_table(
        "sites",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("region", sa.String(length=16), nullable=False),
        sa.Column("floor_area_m2", sa.Float(precision=53), nullable=True),
        sa.Column("created_at", DT, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=True),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column("location", sa.String(length=128), nullable=True),
        sa.Column("payload_format", sa.String(length=32), nullable=False),
        sa.Column("meter_role", sa.String(length=16), nullable=False),
        sa.Column("bidirectional", sa.Boolean(), nullable=False),
        sa.Column("first_seen_at", DT, nullable=False),
        sa.Column("last_seen_at", DT, nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    op.create_table(
        "hourly_stats",
        sa.Column("device_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("hour_start", DT, nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("coverage", sa.Float(precision=53), nullable=False),
        sa.Column("energy_kwh", sa.Float(precision=53), nullable=False),
        sa.Column("export_kwh", sa.Float(precision=53), nullable=False),
        sa.Column("unallocated_kwh", sa.Float(precision=53), nullable=False),
        sa.Column("power_avg_w", sa.Float(precision=53), nullable=True),
        sa.Column("power_min_w", sa.Float(precision=53), nullable=True),
        sa.Column("power_max_w", sa.Float(precision=53), nullable=True),
        sa.Column("temperature_avg_c", sa.Float(precision=53), nullable=True),
        sa.Column("humidity_avg_pct", sa.Float(precision=53), nullable=True),
        sa.Column("brightness_avg_lux", sa.Float(precision=53), nullable=True),
        sa.Column("co2_kg", sa.Float(precision=53), nullable=False),
        sa.Column("emission_factor_id", sa.Integer(), nullable=True),
        sa.Column("energy_source", sa.String(length=16), nullable=True),
        sa.Column("flags", sa.String(length=255), nullable=True),
        sa.Column("computed_at", DT, nullable=False),
        sa.ForeignKeyConstraint(
            ["emission_factor_id"],
            ["emission_factors.id"],
        ),
        sa.PrimaryKeyConstraint("device_id", "hour_start"),
    )
    op.create_index("ix_hourly_stats_hour_start", "hourly_stats", ["hour_start"], unique=False)
    op.create_table(
        "renewable_contracts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("energy_kwh", sa.Float(precision=53), nullable=False),
        sa.Column("instrument", sa.String(length=32), nullable=False),
        sa.Column("note", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("renewable_contracts")
    op.drop_index("ix_hourly_stats_hour_start", table_name="hourly_stats")
    op.drop_table("hourly_stats")
    op.drop_table("devices")
    op.drop_table("sites")
    op.drop_table("readings")
    op.drop_index(op.f("ix_esg_reports_status"), table_name="esg_reports")
    op.drop_table("esg_reports")
    op.drop_table("emission_factors")
    op.drop_index(op.f("ix_api_keys_prefix"), table_name="api_keys")
    op.drop_table("api_keys")
