"""The writer's handler: store a batch of canonical readings idempotently, in one transaction.

A row whose ``(device, ts)`` already exists changes nothing but the columns it left empty
(``INSERT ... ON DUPLICATE KEY UPDATE col = COALESCE(col, new)``); never ``INSERT IGNORE``,
which silently clamps or drops bad values. A row the database refuses is split out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, func, select, tuple_
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.exc import DataError, IntegrityError

from powerflow_common.db.models import Device, ReadingRow
from powerflow_common.energy import touched_hours
from powerflow_common.validation import DEVICE_CODE_PATTERN
from powerflow_common.wire import MEASUREMENT_FIELDS, Bucket, Reading

_readings = cast(Table, ReadingRow.__table__)
_devices = cast(Table, Device.__table__)


@dataclass(slots=True)
class StoreResult:
    """What one batch did to the database."""

    inserted: int = 0
    duplicates: int = 0
    conflicts: int = 0  # duplicates whose stored values differ from the new ones
    refused: list[tuple[Reading, str]] = field(default_factory=list)
    buckets: list[Bucket] = field(default_factory=list)


def merge_same_key(readings: Iterable[Reading]) -> list[Reading]:
    """One reading per (device, ts): later messages fill the fields earlier ones left empty."""
    merged: dict[tuple[str, datetime], dict[str, Any]] = {}
    for reading in readings:
        current = merged.get(reading.key)
        if current is None:
            merged[reading.key] = {
                "device_code": reading.device_code,
                "ts": reading.ts,
                **{f: getattr(reading, f) for f in MEASUREMENT_FIELDS},
            }
            continue
        for name in MEASUREMENT_FIELDS:
            if current[name] is None:
                current[name] = getattr(reading, name)
    return [Reading(**fields) for fields in merged.values()]


def register_devices(conn: Connection, readings: Sequence[Reading]) -> dict[str, int]:
    """Ids of the batch's devices; unknown ones are registered on first sight."""
    seen: dict[str, tuple[datetime, datetime]] = {}
    for r in readings:
        first, last = seen.get(r.device_code, (r.ts, r.ts))
        seen[r.device_code] = (min(first, r.ts), max(last, r.ts))
    stmt = insert(_devices).values(
        [{"code": code, "first_seen_at": a, "last_seen_at": b} for code, (a, b) in seen.items()]
    )
    stmt = stmt.on_duplicate_key_update(
        last_seen_at=func.greatest(_devices.c.last_seen_at, stmt.inserted.last_seen_at),
        first_seen_at=func.least(_devices.c.first_seen_at, stmt.inserted.first_seen_at),
    )
    conn.execute(stmt)
    rows = conn.execute(select(_devices.c.code, _devices.c.id).where(_devices.c.code.in_(seen)))
    return {code: device_id for code, device_id in rows}


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    return a == b


def _insert_rows(conn: Connection, rows: list[dict[str, Any]]) -> tuple[int, int]:
    """Upsert rows; returns (duplicates, conflicts) counted against what was stored before."""
    keys = [(row["device_id"], row["ts"]) for row in rows]
    existing = {
        (row.device_id, row.ts): row
        for row in conn.execute(
            select(_readings).where(tuple_(_readings.c.device_id, _readings.c.ts).in_(keys))
        )
    }
    conflicts = 0
    for row in rows:
        old = existing.get((row["device_id"], row["ts"]))
        if old is not None and any(
            row[f] is not None
            and getattr(old, f) is not None
            and not _same(row[f], getattr(old, f))
            for f in MEASUREMENT_FIELDS
        ):
            conflicts += 1
    stmt = insert(_readings)
    stmt = stmt.on_duplicate_key_update(
        {f: func.coalesce(_readings.c[f], stmt.inserted[f]) for f in MEASUREMENT_FIELDS}
    )
    conn.execute(stmt, rows)
    return len(existing), conflicts


def store_readings(
    engine: Engine, readings: Sequence[Reading], *, received_at: datetime, max_gap: timedelta
) -> StoreResult:
    """Store readings exactly once; refused rows are returned, not raised."""
    result = StoreResult()
    batch = []
    for reading in merge_same_key(readings):
        if DEVICE_CODE_PATTERN.fullmatch(reading.device_code):
            batch.append(reading)
        else:  # it would fail the device registration of the whole batch
            result.refused.append((reading, "device code does not match the code pattern"))
    if not batch:
        return result
    with engine.begin() as conn:
        ids = register_devices(conn, batch)
    rows = [
        {
            "device_id": ids[r.device_code],
            "ts": r.ts,
            "received_at": received_at,
            **{f: getattr(r, f) for f in MEASUREMENT_FIELDS},
        }
        for r in batch
    ]
    stored = _store_splitting(engine, rows, batch, result)
    buckets = {
        (row["device_id"], hour) for row in stored for hour in touched_hours(row["ts"], max_gap)
    }
    result.buckets = [Bucket(device_id, hour) for device_id, hour in sorted(buckets)]
    return result


def _store_splitting(
    engine: Engine, rows: list[dict[str, Any]], batch: list[Reading], result: StoreResult
) -> list[dict[str, Any]]:
    """Insert in one transaction; when the database refuses, halve until culprits stand alone."""
    try:
        with engine.begin() as conn:
            duplicates, conflicts = _insert_rows(conn, rows)
    except (DataError, IntegrityError) as exc:
        if len(rows) == 1:
            result.refused.append((batch[0], str(exc.orig)[:500]))
            return []
        middle = len(rows) // 2
        return _store_splitting(engine, rows[:middle], batch[:middle], result) + _store_splitting(
            engine, rows[middle:], batch[middle:], result
        )
    result.inserted += len(rows) - duplicates
    result.duplicates += duplicates
    result.conflicts += conflicts
    return rows
