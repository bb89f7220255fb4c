"""The writer's handler: store a batch of canonical readings idempotently, in one transaction.

A row whose ``(device, ts)`` already exists changes nothing but the columns it left empty
(an upsert setting ``col = COALESCE(col, new)``, powerflow_common.db.dialect); never
``INSERT IGNORE``, which silently clamps or drops bad values. A second, different value for a
stored column keeps the first and is reported as a conflict with both values. A row that
does not fit its columns (powerflow_common.db.limits, the same on SQLite and MariaDB) or
that the database refuses is split out.

A reading for a frozen hour (before the raw horizon, powerflow_common.retention) is returned
in ``beyond_retention`` to be dead-lettered, the rest of the batch stored: its hour's stats are
final and its raw neighbours may be gone. The horizon is read under a shared lock in the
insert's own transaction, so a move of the horizon never slips between the check and the insert.

Device rules (powerflow_common.admission): a reading on the shared legacy topic is stored only
for a device enrolled as legacy and not revoked, else it is returned in ``not_enrolled`` to be
dead-lettered; it never holds the rest of the batch back. A device seen for the first time any
other way is registered waiting for admission: kept, counted in no total.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import Connection, Engine, func, select, tuple_
from sqlalchemy.exc import DataError, IntegrityError

from powerflow_common.admission import (
    LEGACY_TOPIC,
    DeviceStanding,
    may_use_legacy_topic,
    standing_of,
)
from powerflow_common.db.dialect import begin_write, dialect_of
from powerflow_common.db.horizon import frozen_before
from powerflow_common.db.limits import row_problem
from powerflow_common.db.models import DEVICES, READINGS, SITES
from powerflow_common.energy import touched_hours
from powerflow_common.logs import get_logger
from powerflow_common.retention import is_frozen
from powerflow_common.validation import DEVICE_CODE_PATTERN, canonical_device_code
from powerflow_common.wire import MEASUREMENT_FIELDS, Bucket, Reading

log = get_logger(__name__)

_readings = READINGS
_devices = DEVICES
_sites = SITES

# Enough to see what disagrees, bounded so that a device replaying other values cannot
# flood the log; every conflict is still counted.
CONFLICTS_LOGGED_PER_BATCH = 20


@dataclass(frozen=True, slots=True)
class Conflict:
    """A second, different value for a column of a reading already stored (or merged)."""

    device_code: str
    ts: datetime
    column: str
    stored: object
    incoming: object


@dataclass(slots=True)
class Conflicts:
    """Readings that disagreed with what was there: all counted, the first few kept."""

    count: int = 0  # readings with at least one conflicting column
    samples: list[Conflict] = field(default_factory=list)
    unlogged: int = 0  # conflicting columns beyond the samples

    def add(self, found: list[Conflict]) -> None:
        if not found:
            return
        self.count += 1
        self._keep(found)

    def extend(self, other: Conflicts) -> None:
        self.count += other.count
        self.unlogged += other.unlogged
        self._keep(other.samples)

    def _keep(self, found: list[Conflict]) -> None:
        room = max(0, CONFLICTS_LOGGED_PER_BATCH - len(self.samples))
        self.samples.extend(found[:room])
        self.unlogged += max(0, len(found) - room)


@dataclass(slots=True)
class StoreResult:
    """What one batch did to the database."""

    inserted: int = 0
    duplicates: int = 0
    conflict_log: Conflicts = field(default_factory=Conflicts)
    refused: list[tuple[Reading, str]] = field(default_factory=list)
    # On the legacy topic for a device not enrolled as legacy (or unknown, or revoked).
    not_enrolled: list[Reading] = field(default_factory=list)
    # For an hour before the raw horizon: frozen, refused (reason beyond_retention).
    beyond_retention: list[Reading] = field(default_factory=list)
    # Devices this batch registered, waiting for admission; readings of waiting devices.
    new_waiting: list[str] = field(default_factory=list)
    waiting_readings: int = 0
    buckets: list[Bucket] = field(default_factory=list)

    @property
    def conflicts(self) -> int:
        """Readings with a second, different value for a stored column (the first kept)."""
        return self.conflict_log.count


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    return a == b


def _differences(
    code: str, ts: datetime, stored: Callable[[str], object], incoming: Callable[[str], object]
) -> list[Conflict]:
    found = []
    for name in MEASUREMENT_FIELDS:
        old, new = stored(name), incoming(name)
        if old is not None and new is not None and not _same(old, new):
            found.append(Conflict(code, ts, name, old, new))
    return found


def merge_same_key(
    readings: Iterable[Reading], conflicts: Conflicts | None = None
) -> list[Reading]:
    """One reading per (device, ts): later messages fill the fields earlier ones left empty.

    A later, different value for a field already filled keeps the first, as the database
    does, and is added to ``conflicts``.
    """
    merged: dict[tuple[str, datetime], dict[str, Any]] = {}
    for reading in readings:
        current = merged.get(reading.key)
        if current is None:
            merged[reading.key] = msgspec.structs.asdict(reading)
            continue
        if conflicts is not None:
            conflicts.add(
                _differences(
                    reading.device_code,
                    reading.ts,
                    current.__getitem__,
                    lambda name, r=reading: getattr(r, name),  # type: ignore[misc]
                )
            )
        for name in MEASUREMENT_FIELDS:
            if current[name] is None:
                current[name] = getattr(reading, name)
        current["bidirectional"] = current["bidirectional"] or reading.bidirectional
    return [Reading(**fields) for fields in merged.values()]


def canonical_codes(readings: Iterable[Reading]) -> list[Reading]:
    """Readings with their device codes in the one canonical form (validation's rule).

    ingest already publishes canonical codes; this covers messages from before the rule and
    anything else that reaches READINGS.
    """
    out = []
    for r in readings:
        code = canonical_device_code(r.device_code)
        out.append(r if code == r.device_code else msgspec.structs.replace(r, device_code=code))
    return out


def register_devices(
    conn: Connection,
    readings: Sequence[Reading],
    *,
    admitted_by: str | None = None,
    legacy_topic: bool = False,
) -> dict[str, int]:
    """Ids of the batch's devices; unknown ones are registered on first sight.

    A new device waits for admission unless ``admitted_by`` (an operator's own import)
    admits it; ``legacy_topic`` lets new devices publish on the shared legacy topic. Neither
    touches a device that exists.

    Never raises on a code the database considers equal to another (a database whose
    ``devices.code`` still compares case-insensitively, before migration 0003): such a
    code maps to the row the database matched, said loudly.
    """
    seen: dict[str, dict[str, Any]] = {}
    for r in readings:
        device = seen.setdefault(
            r.device_code,
            {
                "code": r.device_code,
                "first_seen_at": r.ts,
                "last_seen_at": r.ts,
                "payload_format": r.payload_format,
                "bidirectional": False,
                "admitted_at": None if admitted_by is None else r.ts,
                "admitted_by": admitted_by,
                "legacy_topic": legacy_topic,
            },
        )
        device["first_seen_at"] = min(device["first_seen_at"], r.ts)
        if admitted_by is not None:
            device["admitted_at"] = device["first_seen_at"]
        device["last_seen_at"] = max(device["last_seen_at"], r.ts)
        device["bidirectional"] = device["bidirectional"] or r.bidirectional
    sql = dialect_of(conn)
    # In key order, as the readings below: copies registering the same devices take their row
    # locks in one order, so InnoDB never finds them deadlocked.
    upsert = sql.upsert(_devices, ["code"], [seen[code] for code in sorted(seen)])
    new = upsert.incoming
    stmt = upsert.on_conflict(
        {
            "last_seen_at": sql.greatest(_devices.c.last_seen_at, new.last_seen_at),
            "first_seen_at": sql.least(_devices.c.first_seen_at, new.first_seen_at),
            # A meter that ever reported export is bidirectional; nothing clears that but a
            # person.
            "bidirectional": _devices.c.bidirectional | new.bidirectional,
        }
    )
    conn.execute(stmt)
    rows = conn.execute(select(_devices.c.code, _devices.c.id).where(_devices.c.code.in_(seen)))
    found = {code: device_id for code, device_id in rows}
    ids: dict[str, int] = {}
    for code in seen:
        if code in found:
            ids[code] = found[code]
            continue
        # The database matched this code to a row spelled otherwise (its collation).
        stored = next((c for c in found if c.casefold() == code.casefold()), None)
        if stored is None:
            raise LookupError(f"device {code!r} was registered but is not found by its code")
        log.error(
            "device_code_collation_mismatch",
            code=code,
            stored_as=stored,
            fix="run `powerflow migrate`: devices.code must compare exactly (utf8mb4_bin)",
        )
        ids[code] = found[stored]
    return ids


def _insert_rows(
    conn: Connection, rows: list[dict[str, Any]], codes: dict[int, str], conflicts: Conflicts
) -> int:
    """Upsert rows; returns the duplicates, adding to ``conflicts`` what disagrees."""
    keys = [(row["device_id"], row["ts"]) for row in rows]
    existing = {
        (row.device_id, row.ts): row
        for row in conn.execute(
            select(_readings).where(tuple_(_readings.c.device_id, _readings.c.ts).in_(keys))
        )
    }
    for row in rows:
        old = existing.get((row["device_id"], row["ts"]))
        if old is not None:
            conflicts.add(
                _differences(
                    codes[row["device_id"]],
                    row["ts"],
                    lambda name, o=old: getattr(o, name),  # type: ignore[misc]
                    row.__getitem__,
                )
            )
    upsert = dialect_of(conn).upsert(_readings, ["device_id", "ts"])
    stmt = upsert.on_conflict(
        {f: func.coalesce(_readings.c[f], upsert.incoming[f]) for f in MEASUREMENT_FIELDS}
    )
    conn.execute(stmt, rows)
    return len(existing)


def resolve_local_times(
    conn: Connection, readings: Sequence[Reading], device_clock_timezone: str
) -> list[Reading]:
    """Readings with local device clocks turned into UTC with their device's site timezone."""
    codes = {r.device_code for r in readings if r.local_time}
    if not codes:
        return list(readings)
    zones: dict[str, str] = {
        code: zone
        for code, zone in conn.execute(
            select(_devices.c.code, _sites.c.timezone)
            .join(_sites, _sites.c.id == _devices.c.site_id)
            .where(_devices.c.code.in_(codes))
        )
    }
    resolved = []
    for r in readings:
        if r.local_time:
            zone = ZoneInfo(zones.get(r.device_code, device_clock_timezone))
            # fold=0: an ambiguous autumn hour is read as its first occurrence.
            utc = r.ts.replace(tzinfo=zone).astimezone(UTC)
            r = msgspec.structs.replace(r, ts=utc, local_time=False)
        resolved.append(r)
    return resolved


def screen_legacy_topic(
    readings: Sequence[Reading], standing: dict[str, DeviceStanding]
) -> tuple[list[Reading], list[Reading]]:
    """(readings to store, legacy-topic readings of devices not enrolled as legacy)."""
    keep: list[Reading] = []
    refused: list[Reading] = []
    for r in readings:
        if r.topic == LEGACY_TOPIC and not may_use_legacy_topic(standing.get(r.device_code)):
            refused.append(r)
        else:
            keep.append(r)
    return keep, refused


def store_readings(
    engine: Engine,
    readings: Sequence[Reading],
    *,
    received_at: datetime,
    max_gap: timedelta,
    device_clock_timezone: str = "Asia/Seoul",
    admitted_by: str | None = None,
    legacy_topic: bool = False,
) -> StoreResult:
    """Store readings exactly once; refused rows are returned, not raised.

    ``admitted_by``/``legacy_topic``: how devices this call registers start (see
    register_devices); by default they wait for admission.
    """
    result = StoreResult()
    # Canonical codes first: a local clock is resolved with the site of the device's stored
    # (canonical) code, and the legacy-topic rule looks devices up by it.
    readings = canonical_codes(readings)
    with engine.connect() as conn:
        standing = standing_of(
            conn, (r.device_code for r in readings if DEVICE_CODE_PATTERN.fullmatch(r.device_code))
        )
    # Before merging: a forged legacy reading must not fill fields of a genuine one.
    readings, result.not_enrolled = screen_legacy_topic(readings, standing)
    if any(r.local_time for r in readings):
        with engine.connect() as conn:
            readings = resolve_local_times(conn, readings, device_clock_timezone)
    batch = []
    for reading in merge_same_key(readings, result.conflict_log):
        if DEVICE_CODE_PATTERN.fullmatch(reading.device_code):
            batch.append(reading)
        else:  # it would fail the device registration of the whole batch
            result.refused.append((reading, "device code does not match the code pattern"))
    if not batch:
        return result
    with begin_write(engine) as conn:
        ids = register_devices(conn, batch, admitted_by=admitted_by, legacy_topic=legacy_topic)
    if admitted_by is None:
        result.new_waiting = sorted(code for code in ids if code not in standing)
        waiting = {*result.new_waiting, *(c for c, s in standing.items() if not s.admitted)}
        result.waiting_readings = sum(1 for r in batch if r.device_code in waiting)
    codes = {device_id: code for code, device_id in ids.items()}
    rows: list[dict[str, Any]] = []
    fitting: list[Reading] = []
    for r in batch:
        row = {
            "device_id": ids[r.device_code],
            "ts": r.ts,
            "received_at": received_at,
            **{f: getattr(r, f) for f in MEASUREMENT_FIELDS},
        }
        # Checked here, not left to the database: SQLite would store what MariaDB refuses.
        problem = row_problem(_readings, row)
        if problem is not None:
            result.refused.append((r, problem))
            continue
        rows.append(row)
        fitting.append(r)
    if not rows:
        return result
    # Primary key order: writer copies storing overlapping keys at the same moment (a replay,
    # one quantity per message) then lock them in one order and wait for each other; in
    # arrival order InnoDB found them deadlocked, and the retry looked like an outage.
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["device_id"], rows[i]["ts"]))
    rows = [rows[i] for i in order]
    fitting = [fitting[i] for i in order]
    stored = _store_splitting(engine, rows, fitting, codes, result)
    buckets = {
        (row["device_id"], hour) for row in stored for hour in touched_hours(row["ts"], max_gap)
    }
    result.buckets = [Bucket(device_id, hour) for device_id, hour in sorted(buckets)]
    return result


def _store_splitting(
    engine: Engine,
    rows: list[dict[str, Any]],
    batch: list[Reading],
    codes: dict[int, str],
    result: StoreResult,
) -> list[dict[str, Any]]:
    """Insert in one transaction; when the database refuses, halve until culprits stand alone."""
    conflicts = Conflicts()
    late: list[Reading] = []
    stored = rows
    try:
        # IMMEDIATE on SQLite: this transaction reads the stored rows, then writes.
        with begin_write(engine) as conn:
            horizon = frozen_before(conn, lock=True)
            if horizon is not None:
                frozen = [is_frozen(row["ts"], horizon) for row in rows]
                late = [r for r, f in zip(batch, frozen, strict=True) if f]
                stored = [row for row, f in zip(rows, frozen, strict=True) if not f]
            duplicates = _insert_rows(conn, stored, codes, conflicts) if stored else 0
    except (DataError, IntegrityError) as exc:
        if len(rows) == 1:
            result.refused.append((batch[0], str(exc.orig)[:500]))
            return []
        middle = len(rows) // 2
        return _store_splitting(
            engine, rows[:middle], batch[:middle], codes, result
        ) + _store_splitting(engine, rows[middle:], batch[middle:], codes, result)
    result.beyond_retention.extend(late)  # only once committed: a retry finds them again
    result.inserted += len(stored) - duplicates
    result.duplicates += duplicates
    # Only what was committed: a refused transaction's conflicts are found again on retry.
    result.conflict_log.extend(conflicts)
    return stored
