"""Device-site history: each hour is attributed to the site and meter role a device had then.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 09:30:00

Every existing device gets one row, its current placement, valid from its first_seen_at
(totals read a device's earliest placement as reaching back to the beginning of time, so
hours older than that stay where they were). ``devices.site_id`` and ``meter_role`` stay the
current placement.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

DT = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "device_sites",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column("meter_role", sa.String(length=16), nullable=False),
        sa.Column("valid_from", DT, nullable=False),
        sa.Column("recorded_at", DT, nullable=False),
        sa.Column("recorded_by", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("device_id", "valid_from", name="uq_device_site_from"),
    )
    op.create_index(op.f("ix_device_sites_site_id"), "device_sites", ["site_id"], unique=False)
    # The time comes from Python: UTC_TIMESTAMP is MySQL's alone (SQLite has no such call).
    op.get_bind().execute(
        sa.text(
            "INSERT INTO device_sites (device_id, site_id, meter_role, valid_from, recorded_at,"
            " recorded_by) SELECT id, site_id, meter_role, first_seen_at, :now,"
            " 'migration 0005' FROM devices"
        ).bindparams(sa.bindparam("now", type_=DT)),
        {"now": datetime.now(UTC).replace(tzinfo=None)},
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_device_sites_site_id"), table_name="device_sites")
    op.drop_table("device_sites")
