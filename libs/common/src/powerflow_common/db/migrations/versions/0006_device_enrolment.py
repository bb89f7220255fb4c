"""Device enrolment: only admitted devices count; broker credentials; the legacy shared topic.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 12:30:00

- ``admitted_at``/``admitted_by``: a device counts towards totals and reports only once
  someone admitted it (``powerflow devices enroll`` or ``admit``, or the dashboard). Devices
  that exist already were counted before this migration, so they are admitted by it: an
  upgrade never silently empties an organisation's totals.
- ``enrolled_at``/``revoked_at``: the device has broker credentials (username
  ``device-<code>``, which is also its client id); revoking removes them at once.
- ``legacy_topic``: the device may publish on the prototype's shared ``power/measurement``,
  where nothing proves who sent a reading. Existing devices of the original format keep it,
  so prototype devices keep working after the upgrade.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

DT = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql", "mariadb")


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("admitted_at", DT, nullable=True))
        batch.add_column(sa.Column("admitted_by", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("enrolled_at", DT, nullable=True))
        batch.add_column(sa.Column("revoked_at", DT, nullable=True))
        batch.add_column(
            sa.Column("legacy_topic", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.execute(
        "UPDATE devices SET admitted_at = first_seen_at, admitted_by = 'migration 0006',"
        " legacy_topic = (payload_format = 'original')"
    )


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        for column in ("legacy_topic", "revoked_at", "enrolled_at", "admitted_by", "admitted_at"):
            batch.drop_column(column)
