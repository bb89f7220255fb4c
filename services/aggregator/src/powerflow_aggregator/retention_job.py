"""The retention job: monthly partitions ahead of time, the raw horizon, and raw readings gone.

One run (``powerflow retention``, and every aggregator copy every
``POWERFLOW_RETENTION_INTERVAL_S``; a named lock lets one run at a time):

1. MySQL/MariaDB: split the next months off the catch-all partition (``REORGANIZE PARTITION
   pmax``), so each month has its own partition before its first row arrives.
2. With ``POWERFLOW_RAW_RETENTION_DAYS`` set: move the raw horizon towards its target (at
   most ``MAX_HORIZON_ADVANCE`` a run, so a first run on years of data is bounded), but
   never past an hour that is not rolled up (an hour with readings and no stats row, or whose
   row or quarters were computed before its newest reading was stored: the aggregator still
   has it to do). Hours of the window whose stats are current but whose quarters are missing
   (an install upgraded to migration 0009) are recomputed here first, in chunks, from the raw
   readings still there, so the horizon advances on an upgraded install.
   The move waits for every writer and recompute that read the horizon (a row lock), so after
   it no late reading is stored before the horizon and no frozen hour is recomputed from raw.
   Hours that became dirty in between (a reading stored just before the move) are recomputed
   here from their raw readings, which are still there.
3. Delete raw readings before the horizon minus the neighbour guard: whole monthly partitions
   on MySQL/MariaDB (``DROP PARTITION``, no row-by-row delete); on SQLite bounded batches, each
   its own short write transaction, so writers wait at most one batch.

The rules themselves (what is frozen, where the horizon goes, which partitions may go) are
pure, in powerflow_common.retention.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, delete, func, select, text

from powerflow_aggregator import metrics
from powerflow_aggregator.rollup import RollupConfig, recompute_buckets
from powerflow_common import daily_site
from powerflow_common.db.dialect import (
    HOUR_TEXT_FORMAT,
    LockNotAcquired,
    begin_write,
    dialect_of,
    lock_name,
)
from powerflow_common.db.horizon import frozen_before, set_horizon
from powerflow_common.db.models import DEVICES, HOURLY_STATS, QUARTER_HOUR_STATS, READINGS
from powerflow_common.errors import Unavailable
from powerflow_common.logs import get_logger
from powerflow_common.retention import (
    CATCH_ALL_PARTITION,
    Partition,
    advance_until,
    droppable_partitions,
    next_horizon,
    partition_name,
    partitions_to_add,
    raw_delete_before,
    retention_target,
)
from powerflow_common.settings import Settings
from powerflow_common.wire import Bucket

log = get_logger(__name__)

_readings = READINGS
_stats = HOURLY_STATS
_quarters = QUARTER_HOUR_STATS
_devices = DEVICES

RETENTION_LOCK = "retention"
# Another copy running the job is not waited for: it does the same work.
RETENTION_LOCK_WAIT_S = 0.0
# Not rolled-up hours named in a log line; all are counted.
HELD_BACK_LOGGED = 10
# Hours recomputed per call when backfilling quarters: each call then refreshes its sites'
# days incrementally (below daily_site.BULK_REBUILD_HOURS, which would stop serving them).
QUARTER_BACKFILL_CHUNK_HOURS = 500
_PARTITION_BOUND = re.compile(r"'(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(?:\.\d+)?'")


class RetentionError(Unavailable, RuntimeError):
    """The job cannot go on safely (e.g. the catch-all partition is missing)."""


@dataclass(slots=True)
class RetentionOutcome:
    """What one run did."""

    skipped: bool = False  # another copy held the job's lock
    partitioned: bool | None = None  # MySQL/MariaDB: readings partitioned; None on SQLite
    partitions_added: list[str] = field(default_factory=list)
    horizon_before: datetime | None = None
    horizon: datetime | None = None
    target: datetime | None = None
    not_rolled_up: list[Bucket] = field(default_factory=list)  # held the horizon back
    quarters_backfilled: int = 0  # hours with stats but no quarters, recomputed from raw
    recomputed_frozen: int = 0  # hours dirtied while the horizon moved, recomputed from raw
    delete_before: datetime | None = None
    partitions_dropped: list[str] = field(default_factory=list)
    rows_deleted: int = 0


def _is_mysql(conn: Connection) -> bool:
    return dialect_of(conn).name == "mysql"


def readings_partitions(conn: Connection) -> list[Partition] | None:
    """``readings``' RANGE partitions, in order; None when it is not partitioned."""
    rows = conn.execute(
        text(
            "SELECT PARTITION_NAME, PARTITION_DESCRIPTION FROM information_schema.PARTITIONS"
            " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'readings'"
            " ORDER BY PARTITION_ORDINAL_POSITION"
        )
    ).all()
    if not rows or rows[0][0] is None:
        return None
    partitions = []
    for name, description in rows:
        if str(description).upper() == "MAXVALUE":
            partitions.append(Partition(name, None))
            continue
        found = _PARTITION_BOUND.search(str(description))
        if found is None:
            raise RetentionError(f"readings partition {name} has an unexpected bound {description}")
        upper = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        partitions.append(Partition(name, upper))
    return partitions


def _bound_sql(upper: datetime) -> str:
    return f"'{upper.astimezone(UTC):%Y-%m-%d %H:%M:%S}'"


def ensure_partitions(engine: Engine, now: datetime) -> tuple[bool | None, list[str]]:
    """MySQL/MariaDB: give the months up to ``PARTITIONS_AHEAD_MONTHS`` ahead their partitions.

    Returns (partitioned: None on SQLite, the partitions added).
    """
    with engine.connect() as conn:
        if not _is_mysql(conn):
            return None, []
        partitions = readings_partitions(conn)
        if partitions is None:
            metrics.READINGS_PARTITIONED.set(0)
            log.error(
                "readings_not_partitioned",
                effect="retention deletes raw readings in batches instead of dropping months",
                fix="run `powerflow migrate` (migration 0008 partitions readings by month)",
            )
            return False, []
        metrics.READINGS_PARTITIONED.set(1)
        if partitions[-1].upper is not None or partitions[-1].name != CATCH_ALL_PARTITION:
            raise RetentionError(
                f"readings has no catch-all partition {CATCH_ALL_PARTITION} (MAXVALUE) last:"
                " an insert beyond the last month would fail; recreate it before retention runs"
            )
        bounds = partitions_to_add(partitions, now)
        if not bounds:
            return True, []
        names = [partition_name(b) for b in bounds]
        parts = [
            f"PARTITION {name} VALUES LESS THAN ({_bound_sql(b)})"
            for name, b in zip(names, bounds, strict=True)
        ]
        parts.append(f"PARTITION {CATCH_ALL_PARTITION} VALUES LESS THAN (MAXVALUE)")
        # Moves only the catch-all's rows (normally none): the monthly partitions stay put.
        conn.exec_driver_sql(
            f"ALTER TABLE readings REORGANIZE PARTITION {CATCH_ALL_PARTITION} INTO"
            f" ({', '.join(parts)})"
        )
    metrics.RETENTION_PARTITIONS_ADDED.inc(len(names))
    log.info("readings_partitions_added", partitions=names)
    return True, names


def not_rolled_up(
    engine: Engine, start: datetime | None, end: datetime, *, first_only: bool = False
) -> list[Bucket]:
    """(device, hour)s in [start, end) whose stats or quarters are missing or older than their
    readings.

    An hour is rolled up when it has a stats row that counted every reading the hour has now
    (``samples``), and it and its quarters were computed at or after the newest reading of the
    hour was stored (``received_at``; the writer commits before it announces, and the
    aggregator recomputes after; an hour and its quarters are written together). The count is
    what proves it: ``received_at`` is a writer's clock, stamped before its commit, and
    ``computed_at`` the aggregator's, so a reading committed just after a recompute that did
    not see it, or stamped by a clock behind the aggregator's, can look older than the row;
    it still makes the hour one reading more than its row counted (readings are only ever
    added to a live hour).
    Readings of deleted devices count nowhere and are ignored. ``first_only``: the earliest
    such hour of each device is enough.
    """
    found = [
        bucket
        for device_buckets in _unrolled_by_device(engine, start, end, first_only=first_only)
        for bucket, _stats_current in device_buckets
    ]
    return sorted(found, key=lambda b: (b.hour_start, b.device_id))


def _unrolled_by_device(
    engine: Engine, start: datetime | None, end: datetime, *, first_only: bool = False
) -> Iterator[list[tuple[Bucket, bool]]]:
    """Per device, its hours in [start, end) not rolled up, each with whether its stats row is
    current (then only its quarters are missing or stale: an install upgraded to 0009)."""
    with engine.connect() as conn:
        hour_expr = dialect_of(conn).hour_text(_readings.c.ts)
        device_ids = conn.execute(select(_devices.c.id).order_by(_devices.c.id)).scalars().all()
        for device_id in device_ids:
            # One device at a time: the primary keys (device_id, ts / hour / quarter) serve
            # the ranges.
            reading_filter = [_readings.c.device_id == device_id, _readings.c.ts < end]
            stat_filter = [_stats.c.device_id == device_id, _stats.c.hour_start < end]
            quarter_filter = [_quarters.c.device_id == device_id, _quarters.c.quarter_start < end]
            if start is not None:
                reading_filter.append(_readings.c.ts >= start)
                stat_filter.append(_stats.c.hour_start >= start)
                quarter_filter.append(_quarters.c.quarter_start >= start)
            newest = conn.execute(
                select(hour_expr, func.max(_readings.c.received_at), func.count())
                .where(*reading_filter)
                .group_by(hour_expr)
                .order_by(hour_expr)
            ).all()
            if not newest:
                continue
            computed = {
                hour: (computed_at, samples)
                for hour, computed_at, samples in conn.execute(
                    select(_stats.c.hour_start, _stats.c.computed_at, _stats.c.samples).where(
                        *stat_filter
                    )
                )
            }
            # An hour's quarters carry its computed_at; the oldest one stands for them all.
            quarters = {
                _aware(hour): _aware(oldest)
                for hour, oldest in conn.execute(
                    select(_quarters.c.hour_start, func.min(_quarters.c.computed_at))
                    .where(*quarter_filter)
                    .group_by(_quarters.c.hour_start)
                )
            }
            found: list[tuple[Bucket, bool]] = []
            for hour_text, received_at, readings in newest:
                hour = datetime.strptime(hour_text, HOUR_TEXT_FORMAT).replace(tzinfo=UTC)
                newest_at = _aware(received_at)
                stored = computed.get(hour)
                stats_current = (
                    stored is not None and stored[1] == readings and _aware(stored[0]) >= newest_at
                )
                quartered = quarters.get(hour)
                if stats_current and quartered is not None and quartered >= newest_at:
                    continue
                found.append((Bucket(device_id, hour), stats_current))
                if first_only:
                    break
            conn.commit()  # no snapshot held while the caller works on this device
            if found:
                yield found


def backfill_quarters(
    engine: Engine, settings: Settings, start: datetime | None, end: datetime
) -> int:
    """Recompute the hours in [start, end) whose stats are current but whose quarters are
    missing or stale (an install upgraded to 0009), ``QUARTER_BACKFILL_CHUNK_HOURS`` at a
    time; the hours recomputed.

    Hours whose stats are behind too are the aggregator's (they hold the horizon back as
    before). A recompute from raw writes the hour and its quarters in one transaction.
    """
    config = RollupConfig.from_settings(settings)
    done = 0
    for device_buckets in _unrolled_by_device(engine, start, end):
        lacking = [bucket for bucket, stats_current in device_buckets if stats_current]
        if not lacking:
            continue
        # Its sites' days stop being served first (rebuilt once, when next read): these hours
        # are not recomputed again once they have quarters, so no crash may leave a day behind
        # them, and chunks spanning months would each rebuild the site whole otherwise.
        daily_site.invalidate_devices(engine, {lacking[0].device_id})
        for at in range(0, len(lacking), QUARTER_BACKFILL_CHUNK_HOURS):
            chunk = lacking[at : at + QUARTER_BACKFILL_CHUNK_HOURS]
            result = recompute_buckets(engine, chunk, config)
            done += result.recomputed
            metrics.RETENTION_QUARTERS_BACKFILLED.inc(result.recomputed)
            if result.failed:
                # Those hours stay without quarters and hold the horizon back (logged there).
                log.error(
                    "quarters_backfill_failed",
                    hours_failed=len(result.failed),
                    first=f"{result.failed[0][0].device_id}@"
                    f"{result.failed[0][0].hour_start.isoformat()}: {result.failed[0][1]}",
                )
    if done:
        log.info(
            "quarters_backfilled",
            hours=done,
            start=None if start is None else start.isoformat(),
            end=end.isoformat(),
            meaning="hours rolled up before migration 0009 got their quarters from raw readings",
        )
    return done


def oldest_reading(engine: Engine) -> datetime | None:
    """The oldest raw reading of any device, one primary-key seek per device."""
    oldest: datetime | None = None
    with engine.connect() as conn:
        for device_id in conn.execute(select(_devices.c.id)).scalars().all():
            first = conn.execute(
                select(func.min(_readings.c.ts)).where(_readings.c.device_id == device_id)
            ).scalar()
            if first is not None:
                first = _aware(first)
                oldest = first if oldest is None else min(oldest, first)
    return oldest


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _move_horizon(
    engine: Engine, settings: Settings, now: datetime, outcome: RetentionOutcome
) -> None:
    days = settings.raw_retention_days
    assert days is not None
    with engine.connect() as conn:
        current = frozen_before(conn)
    outcome.horizon_before = outcome.horizon = current
    target = outcome.target = retention_target(now, days)
    if current is not None and current >= target:
        metrics.RETENTION_HELD_BACK.set(0)
        return
    until = advance_until(current, None if current is not None else oldest_reading(engine), target)
    # An upgraded install's hours have stats but no quarters yet: they get them from the raw
    # readings still here, so the horizon advances rather than waiting for them for ever.
    outcome.quarters_backfilled = backfill_quarters(engine, settings, current, until)
    held = not_rolled_up(engine, current, until, first_only=True)
    outcome.not_rolled_up = held
    new = next_horizon(current, until, held[0].hour_start if held else None)
    metrics.RETENTION_HELD_BACK.set(1 if held else 0)
    if held:
        log.warning(
            "retention_held_back",
            target=target.isoformat(),
            horizon=None if new is None else new.isoformat(),
            hours_not_rolled_up=len(held),
            first=[f"{b.device_id}@{b.hour_start.isoformat()}" for b in held[:HELD_BACK_LOGGED]],
            meaning="the aggregator has not rolled these hours up yet; raw readings stay",
        )
    if new is None or (current is not None and new <= current):
        return
    # Waits for every writer and recompute holding the horizon's shared lock; after it, none
    # stores or recomputes from raw before the new horizon.
    with begin_write(engine) as conn:
        outcome.horizon = set_horizon(conn, new)
    # A reading stored between the check and the move dirtied an hour that is now frozen:
    # its raw readings are still here, so it is recomputed now, before anything is deleted.
    stragglers = not_rolled_up(engine, current, outcome.horizon)
    if stragglers:
        # Their sites' days stop being served first: once frozen and rolled up, these hours
        # are never recomputed again, so a crash between their commit and the refresh of their
        # days must not leave those days behind (the next read rebuilds them).
        daily_site.invalidate_devices(engine, {b.device_id for b in stragglers})
        result = recompute_buckets(
            engine, stragglers, RollupConfig.from_settings(settings), include_frozen=True
        )
        outcome.recomputed_frozen = result.recomputed
        if result.failed:
            raise RetentionError(
                f"{len(result.failed)} frozen hours could not be recomputed before their raw"
                f" readings go (first: {result.failed[0][1]}); nothing deleted"
            )
        left = not_rolled_up(engine, current, outcome.horizon, first_only=True)
        if left:
            raise RetentionError(
                f"hour {left[0].hour_start.isoformat()} of device {left[0].device_id} is"
                " still not rolled up after its recompute; nothing deleted"
            )
    log.info(
        "raw_horizon_moved",
        horizon_before=None if current is None else current.isoformat(),
        horizon=outcome.horizon.isoformat(),
        recomputed_frozen=outcome.recomputed_frozen,
    )


def _drop_partitions(engine: Engine, settings: Settings, outcome: RetentionOutcome) -> None:
    with engine.connect() as conn:
        partitions = readings_partitions(conn) or []
        names = droppable_partitions(
            partitions, outcome.horizon, timedelta(seconds=settings.max_gap_s)
        )
        for name in names:
            # Metadata only: no row-by-row delete, no undo log, done in a moment.
            conn.exec_driver_sql(f"ALTER TABLE readings DROP PARTITION {name}")
            outcome.partitions_dropped.append(name)
            metrics.RETENTION_PARTITIONS_DROPPED.inc()
            log.info("readings_partition_dropped", partition=name)


def _delete_in_batches(engine: Engine, before: datetime, batch_rows: int) -> int:
    """Delete readings with ``ts < before``, ``batch_rows`` per write transaction."""
    deleted = 0
    with engine.connect() as conn:
        # Every device with rows, deleted devices too (a walk of the primary key's first column).
        device_ids = conn.execute(select(_readings.c.device_id).distinct()).scalars().all()
    for device_id in device_ids:
        while True:
            with begin_write(engine) as conn:
                # The batch's last ts along the primary key: everything up to it goes.
                last = conn.execute(
                    select(_readings.c.ts)
                    .where(_readings.c.device_id == device_id, _readings.c.ts < before)
                    .order_by(_readings.c.ts)
                    .offset(batch_rows - 1)
                    .limit(1)
                ).scalar()
                upper = [_readings.c.ts < before] if last is None else [_readings.c.ts <= last]
                gone = conn.execute(
                    delete(_readings).where(_readings.c.device_id == device_id, *upper)
                ).rowcount
            deleted += gone
            metrics.RETENTION_ROWS_DELETED.inc(gone)
            if last is None:
                break
    return deleted


def run_retention(
    engine: Engine, settings: Settings, *, now: datetime | None = None
) -> RetentionOutcome:
    """One run of the job (see the module's docstring). Raises when it cannot go on safely."""
    now = now or datetime.now(UTC)
    outcome = RetentionOutcome()
    sql = dialect_of(engine)
    database = engine.url.database or ""
    try:
        with sql.named_lock(
            engine, lock_name("pf", RETENTION_LOCK, database), RETENTION_LOCK_WAIT_S
        ):
            outcome.partitioned, outcome.partitions_added = ensure_partitions(engine, now)
            if settings.raw_retention_days is not None:
                _move_horizon(engine, settings, now, outcome)
                if outcome.horizon is not None:
                    max_gap = timedelta(seconds=settings.max_gap_s)
                    outcome.delete_before = raw_delete_before(outcome.horizon, max_gap)
                    if outcome.partitioned:
                        _drop_partitions(engine, settings, outcome)
                    else:
                        outcome.rows_deleted = _delete_in_batches(
                            engine, outcome.delete_before, settings.retention_delete_batch_rows
                        )
    except LockNotAcquired:
        outcome.skipped = True
        metrics.RETENTION_RUNS.labels("skipped").inc()
        log.info("retention_skipped", reason="another copy is running the job")
        return outcome
    except Exception:
        metrics.RETENTION_RUNS.labels("failed").inc()
        raise
    metrics.RETENTION_RUNS.labels("ok").inc()
    if outcome.horizon is not None:
        metrics.RETENTION_HORIZON.set(outcome.horizon.timestamp())
    log.info(
        "retention_done",
        raw_retention_days=settings.raw_retention_days,
        partitions_added=outcome.partitions_added,
        horizon=None if outcome.horizon is None else outcome.horizon.isoformat(),
        target=None if outcome.target is None else outcome.target.isoformat(),
        hours_not_rolled_up=len(outcome.not_rolled_up),
        partitions_dropped=outcome.partitions_dropped,
        rows_deleted=outcome.rows_deleted,
    )
    return outcome
