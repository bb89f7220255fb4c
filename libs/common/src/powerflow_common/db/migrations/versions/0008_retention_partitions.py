"""Years of data: ``readings`` partitioned by month (MySQL/MariaDB) and the raw horizon.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 18:30:00

- ``retention_state``: one row holding the raw horizon. Hours before it are frozen
  (powerflow_common.retention): their raw readings may be gone, so nothing recomputes them
  from raw or deletes them. NULL until the retention job first runs with a retention set.
- MySQL/MariaDB: ``readings`` becomes ``PARTITION BY RANGE COLUMNS(ts)``, one partition per
  calendar month (UTC) from the month of its oldest row (or this month) to three months
  ahead, plus the catch-all ``pmax`` (``MAXVALUE``), so no insert ever fails for want of a
  partition. The primary key (device_id, ts) contains ``ts`` and the table has no foreign
  keys, as partitioning requires. The retention job (``powerflow retention``, and the
  aggregator every ``POWERFLOW_RETENTION_INTERVAL_S``) adds the months ahead and drops whole
  months beyond the horizon.

  This ALTER copies the table under a shared lock: reads go on, writes wait (the writers hold
  their batches and JetStream keeps the backlog). Measured on MariaDB 10.11 on the 2-core test
  machine: docs/operations.md, "Retention and partitions", gives rows/s and what that means for
  a big table, and the copy-and-swap alternative.

SQLite has no partitions; its retention deletes in bounded batches.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

DT = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql", "mariadb")
# Spelled here, not imported, so that this migration never changes with later code.
MONTHS_AHEAD = 3
CATCH_ALL = "pmax"


def _month_index(ts: datetime) -> int:
    return ts.year * 12 + ts.month - 1


def _month_start(index: int) -> datetime:
    return datetime(index // 12, index % 12 + 1, 1)


def _partitions_sql(oldest: datetime | None, now: datetime) -> str:
    first = _month_index(oldest if oldest is not None else now)
    last = _month_index(now) + MONTHS_AHEAD
    parts = []
    for index in range(first, last + 1):
        month, upper = _month_start(index), _month_start(index + 1)
        parts.append(f"PARTITION p{month:%Y%m} VALUES LESS THAN ('{upper:%Y-%m-%d %H:%M:%S}')")
    parts.append(f"PARTITION {CATCH_ALL} VALUES LESS THAN (MAXVALUE)")
    return "PARTITION BY RANGE COLUMNS(ts) (" + ", ".join(parts) + ")"


def upgrade() -> None:
    op.create_table(
        "retention_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("raw_horizon", DT, nullable=True),
        sa.Column("updated_at", DT, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    bind = op.get_bind()
    now = datetime.now(UTC).replace(tzinfo=None)
    op.execute(
        sa.text(
            "INSERT INTO retention_state (id, raw_horizon, updated_at) VALUES (1, NULL, :now)"
        ).bindparams(now=now)
    )
    if bind.dialect.name not in ("mysql", "mariadb"):
        return
    partitioned = bind.execute(
        sa.text(
            "SELECT COUNT(*) FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA = DATABASE()"
            " AND TABLE_NAME = 'readings' AND PARTITION_NAME IS NOT NULL"
        )
    ).scalar()
    if partitioned:
        return  # swapped in already partitioned (docs/operations.md, copy and swap)
    oldest = bind.execute(sa.text("SELECT MIN(ts) FROM readings")).scalar()
    op.execute(f"ALTER TABLE readings {_partitions_sql(oldest, now)}")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name in ("mysql", "mariadb"):
        op.execute("ALTER TABLE readings REMOVE PARTITIONING")
    op.drop_table("retention_state")
