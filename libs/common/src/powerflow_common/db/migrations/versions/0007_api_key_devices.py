"""Device API keys name the devices they may post readings for.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 13:00:00

``api_key_devices`` binds a ``device`` key to device codes (canonical, compared exactly like
``devices.code``). A code, not a device id: a key may be made for a device before its first
reading creates its row. ``POST /api/v1/ingest`` with a device key refuses items of any
other device. Device keys made before this migration are bound to nothing, so they may post
nothing until replaced (``powerflow keys create --role device --device CODE``): an upgrade
closes the hole rather than guessing which devices an old key meant.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_key_devices",
        sa.Column(
            "key_id",
            sa.Integer(),
            sa.ForeignKey("api_keys.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "device_code",
            # Exact comparison: utf8mb4_bin on MySQL; SQLite's default (BINARY) already is.
            sa.String(length=64).with_variant(
                sa.String(length=64, collation="utf8mb4_bin"), "mysql", "mariadb"
            ),
            primary_key=True,
        ),
    )


def downgrade() -> None:
    op.drop_table("api_key_devices")
