"""Device codes compare exactly (utf8mb4_bin); MAC-like codes take their canonical form.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 09:00:00

A database created outside ``powerflow migrate`` (docker's ``MARIADB_DATABASE``, a plain
``CREATE DATABASE``) has MariaDB's case-insensitive default collation, and ``devices.code``
inherited it: ``A4:CF:..`` and ``a4:cf:..`` were one key to the database and two to the
writer, which failed a whole batch on it. After this migration the column compares exactly
everywhere, and the codes already stored follow the rule of
``powerflow_common.validation.canonical_device_code`` (imported, not copied: one rule).

Two stored devices that become one code (``a4-cf-..-01`` and ``A4:CF:..:01``) stop the
migration before it changes anything, with the rows named: merging them would join two
histories that may disagree for the same second, and move totals in reports already sent,
which is an operator's decision, not a migration's.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import sqlalchemy as sa
from alembic import op

from powerflow_common.validation import canonical_device_code

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


class DeviceCodeCollision(RuntimeError):
    """Stored devices whose codes become one under the device code rule."""


def _collisions_message(conn: sa.Connection, groups: dict[str, list[tuple[int, str]]]) -> str:
    lines = [
        "migration 0003 stopped, nothing was changed: these devices become one code under the "
        "device code rule (MAC addresses are upper case with ':' separators):"
    ]
    for canonical, rows in sorted(groups.items()):
        described = []
        for device_id, code in rows:
            readings = conn.execute(
                sa.text("SELECT COUNT(*) FROM readings WHERE device_id = :id"), {"id": device_id}
            ).scalar_one()
            described.append(f"id {device_id} {code!r} ({readings} readings)")
        lines.append(f"  {canonical}: " + ", ".join(described))
    lines.append(
        "Decide which device keeps the code, give each other one a code of its own (e.g. "
        "UPDATE devices SET code = CONCAT(code, '-old') WHERE id = <id>; its readings stay "
        "with it, to review or delete), then run `powerflow migrate` again."
    )
    return "\n".join(lines)


def upgrade() -> None:
    conn = op.get_bind()
    rows = [(int(i), str(c)) for i, c in conn.execute(sa.text("SELECT id, code FROM devices"))]
    groups: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for device_id, code in rows:
        groups[canonical_device_code(code)].append((device_id, code))
    collisions = {canonical: group for canonical, group in groups.items() if len(group) > 1}
    if collisions:
        raise DeviceCodeCollision(_collisions_message(conn, collisions))
    if conn.dialect.name in ("mysql", "mariadb"):
        # MODIFY keeps the unique index; only the comparison changes.
        op.execute(
            "ALTER TABLE devices MODIFY code VARCHAR(64) "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL"
        )
    renamed = 0
    for canonical, [(device_id, code)] in groups.items():
        if canonical != code:
            conn.execute(
                sa.text("UPDATE devices SET code = :code WHERE id = :id"),
                {"code": canonical, "id": device_id},
            )
            renamed += 1
    if renamed:
        log.info("0003: %d device codes took their canonical form", renamed)


def downgrade() -> None:
    # Codes stay canonical and compare exactly: case-insensitive codes were the bug.
    pass
