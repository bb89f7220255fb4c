"""The audit trail of operator corrections to stored readings.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 09:30:00

A correction overwrites a stored measurement on purpose; this table keeps who, when, why and
the value it replaced, one row per changed column. Only numeric measurement columns can be
corrected (``seq`` and ``firmware`` feed no total), so both values are DOUBLE.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# UTC, millisecond precision; spelled here so migrations never depend on model code.
DT = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql", "mariadb")

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reading_corrections",
        # SQLite numbers only an INTEGER PRIMARY KEY (64-bit there) by itself.
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("ts", DT, nullable=False),
        sa.Column("column_name", sa.String(length=32), nullable=False),
        sa.Column("old_value", sa.Float(precision=53), nullable=True),
        sa.Column("new_value", sa.Float(precision=53), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=False),
        sa.Column("corrected_by", sa.String(length=128), nullable=False),
        sa.Column("corrected_at", DT, nullable=False),
        sa.Column("totals_republished_at", DT, nullable=True),
        # RESTRICT: a device with corrections keeps its audit trail; it cannot vanish silently.
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_reading_corrections_device_corrected",
        "reading_corrections",
        ["device_id", "corrected_at"],
        unique=False,
    )
    op.create_index(
        "ix_reading_corrections_device_ts", "reading_corrections", ["device_id", "ts"], unique=False
    )


def downgrade() -> None:
    op.drop_table("reading_corrections")
