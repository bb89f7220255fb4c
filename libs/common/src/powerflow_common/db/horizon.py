"""The stored raw horizon (``retention_state``): the one source of which buckets are frozen.

Read it with ``frozen_before(conn)`` and decide with ``powerflow_common.retention.is_frozen``.
A path that writes a bucket or a reading reads it with ``lock=True`` inside its own write
transaction (a shared row lock on MySQL/MariaDB; SQLite's write transaction is exclusive
anyway), so the retention job's move of the horizon waits for it and everything after sees
the new horizon: no recompute from raw or late reading slips past a horizon being moved.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, select

from powerflow_common.db.dialect import dialect_of
from powerflow_common.db.models import RETENTION_STATE

__all__ = ["BEYOND_RETENTION", "HORIZON_ROW_ID", "frozen_before", "set_horizon"]

HORIZON_ROW_ID = 1  # retention_state holds one row
# The dead-letter reason of a late reading for a frozen hour (its raw neighbours may be gone).
BEYOND_RETENTION = "beyond_retention"

_state = RETENTION_STATE


def frozen_before(conn: Connection, *, lock: bool = False) -> datetime | None:
    """The raw horizon: buckets starting before it are frozen. None: nothing is frozen.

    ``lock``: hold a shared lock on the row until the caller's transaction ends (writers of
    buckets and readings), so a move of the horizon waits for that transaction.
    """
    query = select(_state.c.raw_horizon).where(_state.c.id == HORIZON_ROW_ID)
    if lock:
        query = query.with_for_update(read=True)
    value = conn.execute(query).scalar()
    return None if value is None else value.astimezone(UTC)


def set_horizon(conn: Connection, horizon: datetime) -> datetime:
    """Move the horizon forward to ``horizon`` (never back); returns the horizon now stored.

    Call inside a write transaction: the exclusive row lock waits for every transaction that
    read the horizon with ``lock=True``.
    """
    stored: datetime | None = conn.execute(
        select(_state.c.raw_horizon).where(_state.c.id == HORIZON_ROW_ID).with_for_update()
    ).scalar()
    current = None if stored is None else stored.astimezone(UTC)
    if current is not None and current >= horizon:
        return current
    row = {"id": HORIZON_ROW_ID, "raw_horizon": horizon, "updated_at": datetime.now(UTC)}
    upsert = dialect_of(conn).upsert(_state, ["id"], row)
    conn.execute(
        upsert.on_conflict({"raw_horizon": horizon, "updated_at": upsert.incoming.updated_at})
    )
    return horizon
