"""The aggregator's handler: recompute (device, hour) buckets from raw readings into hourly_stats.

Each bucket is recomputed in a fresh transaction under a named database lock (SQLite: its one
write lock, taken when the transaction begins; powerflow_common.db.dialect), so any number of
copies (and ``powerflow rollup``) converge on the result of the readings stored so far.

A frozen hour (before the raw horizon, powerflow_common.retention) is never recomputed from raw
readings nor deleted for being empty: its raw readings may be gone. A recompute of a frozen hour
only recomputes its CO2 from the stored kWh with the factor set in force (a factor-set change);
the horizon is read under a shared lock inside the bucket's transaction, so it cannot move
between the check and the recompute. Only the retention job, which still has the raw readings
of the hours it freezes, recomputes them from raw (``include_frozen``).
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, Row, and_, delete, or_, select, update
from sqlalchemy.exc import DBAPIError

from powerflow_aggregator import quarter_hour
from powerflow_aggregator.rows import is_empty, restated_co2, stat_row
from powerflow_common import daily_site
from powerflow_common.carbon import EmissionFactor, FactorNotFound, select_factor
from powerflow_common.consumers import TRANSIENT_DB_ERRORS
from powerflow_common.db.dialect import HOUR_TEXT_FORMAT, LOCK_NAME_MAX, LockNotAcquired, dialect_of
from powerflow_common.db.horizon import frozen_before
from powerflow_common.db.models import (
    DEVICES,
    EMISSION_FACTORS,
    HOURLY_STATS,
    READINGS,
    SITES,
)
from powerflow_common.energy import HOUR, EnergySample, hour_floor, hourly_energy
from powerflow_common.errors import Retryable
from powerflow_common.logs import get_logger
from powerflow_common.retention import is_frozen
from powerflow_common.settings import Settings
from powerflow_common.validation import canonical_device_code
from powerflow_common.wire import Bucket

log = get_logger(__name__)

_readings = READINGS
_devices = DEVICES
_sites = SITES
_stats = HOURLY_STATS
_factors = EMISSION_FACTORS

_SAMPLE_COLUMNS = (
    _readings.c.ts,
    _readings.c.power_w,
    _readings.c.energy_wh,
    _readings.c.energy_export_wh,
    _readings.c.temperature_c,
    _readings.c.humidity_pct,
    _readings.c.brightness_lux,
)
_COUNTERS = ("energy_wh", "energy_export_wh")
# What restating a frozen hour's CO2 may change (restated_co2), compared to see if it did.
_RESTATED_COLUMNS = (
    _stats.c.co2_kg,
    _stats.c.emission_factor_id,
    _stats.c.factor_set,
    _stats.c.flags,
)
# Errors worth waiting out: the database or the network is away, or another copy holds a lock.


class LockTimeout(Retryable):
    """Another copy held a bucket's lock for longer than ``aggregator_lock_timeout_s``."""


@dataclass(frozen=True, slots=True)
class RollupConfig:
    """What a recompute needs from the settings."""

    factor_set: str
    default_region: str
    organisation_timezone: str  # calendar of days for devices without a site
    max_gap: timedelta
    counter_reset_tolerance_wh: float
    lock_timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> RollupConfig:
        """The configuration of ``settings``; ``overrides`` win (e.g. another factor set)."""
        values: dict[str, Any] = {
            "factor_set": settings.factor_set,
            "default_region": settings.emission_region,
            "organisation_timezone": settings.organisation_timezone,
            "max_gap": timedelta(seconds=settings.max_gap_s),
            "counter_reset_tolerance_wh": settings.counter_reset_tolerance_wh,
            "lock_timeout_s": settings.aggregator_lock_timeout_s,
        }
        values.update(overrides)
        return cls(**values)


@dataclass(slots=True)
class RecomputeResult:
    """What one call did."""

    recomputed: int = 0
    follow_on: int = 0  # hours of the next counter reading after a gap, recomputed as well
    removed: int = 0  # rows deleted because no reading is near their hour any more
    missing_factor: int = 0
    frozen: int = 0  # frozen hours: CO2 recomputed from the stored kWh, nothing else touched
    failed: list[tuple[Bucket, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DeviceContext:
    """The device facts a bucket's result depends on."""

    bidirectional: bool
    region: str
    timezone: str


def lock_name(database: str, device_id: int, hour_start: datetime) -> str:
    """The named lock of one bucket: ``pf:<db>:<device>:<hour>``, at most 64 characters."""
    hour = hour_start.astimezone(UTC).strftime("%Y%m%d%H")
    name = f"pf:{database}:{device_id}:{hour}"
    if len(name) > LOCK_NAME_MAX:
        # A long database name is shortened to a digest; it only has to be unique per server.
        digest = hashlib.sha256(database.encode()).hexdigest()[:16]
        name = f"pf:{digest}:{device_id}:{hour}"
    return name


def follow_on_hour(
    hour_start: datetime,
    last_counter_ts: datetime | None,
    next_counter_ts: datetime | None,
    max_gap: timedelta,
) -> datetime | None:
    """The hour of the next counter reading when a gap separates it from this hour's last one.

    That hour's unallocated energy depends on this hour's readings, so it is recomputed too.
    """
    if last_counter_ts is None or next_counter_ts is None:
        return None
    if next_counter_ts - last_counter_ts <= max_gap:
        return None  # within max_gap: the readings near the boundary touch that hour anyway
    following = hour_floor(next_counter_ts)
    return following if following != hour_start else None


def load_factors(conn: Connection) -> list[EmissionFactor]:
    """Every emission factor row, as the pure carbon module's structs."""
    return [
        EmissionFactor(
            id=row.id,
            factor_set=row.factor_set,
            region=row.region,
            valid_from=row.valid_from,
            valid_to=row.valid_to,
            kg_co2e_per_kwh=row.kg_co2e_per_kwh,
            source=row.source,
            method="market" if row.method == "market" else "location",
        )
        for row in conn.execute(select(_factors))
    ]


def recompute_buckets(
    engine: Engine,
    buckets: Iterable[Bucket],
    config: RollupConfig,
    *,
    on_bucket: Callable[[Bucket], None] | None = None,
    include_frozen: bool = False,
) -> RecomputeResult:
    """Recompute each bucket (and the follow-on hours it reveals) one at a time, each locked.

    Database outages and lock timeouts raise; any other failure of a bucket is returned in
    ``failed`` and the others go on. ``include_frozen``: recompute frozen hours from raw too
    (the retention job only, while it still holds their raw readings).
    """
    result = RecomputeResult()
    queue = deque(sorted(set(buckets), key=lambda b: (b.device_id, b.hour_start)))
    done: set[tuple[int, datetime]] = set()
    if len(queue) > daily_site.BULK_REBUILD_HOURS:
        # A long restatement (powerflow rollup): its sites' days stop being served now, so a
        # crash halfway never leaves days behind their hours; the next read rebuilds them.
        daily_site.invalidate_devices(engine, {b.device_id for b in queue})
    try:
        with engine.connect() as conn:
            factors = load_factors(conn)
            database = conn.engine.url.database or ""
            contexts: dict[int, DeviceContext | None] = {}
            while queue:
                bucket = queue.popleft()
                key = (bucket.device_id, bucket.hour_start.astimezone(UTC))
                if key in done:
                    continue
                done.add(key)
                context = _cached_context(conn, contexts, bucket.device_id, config)
                if context is None:  # the device was deleted: its hours go with it, unless frozen
                    _drop_hour_of_deleted_device(conn, bucket, include_frozen)
                    continue
                recomputed, follow = _recompute_recorded(
                    conn, database, bucket, context, factors, config, include_frozen, result
                )
                if recomputed and on_bucket is not None:
                    on_bucket(bucket)
                if follow is not None and (bucket.device_id, follow) not in done:
                    result.follow_on += 1
                    queue.append(Bucket(bucket.device_id, follow))
        # The site days holding these hours follow them, once the hours are committed (a crash
        # before this means redelivery: the hours and then their days are recomputed).
        _refresh_site_days(engine, done, config)
    except BaseException:
        # Hours committed before the failure would leave their days behind them, and a rerun
        # may not recompute them again (``--changed-set``, the retention job's rolled-up
        # check): their sites stop being served instead (best effort; rebuilt when read).
        _invalidate_days(engine, {device_id for device_id, _ in done})
        raise
    return result


def _cached_context(
    conn: Connection,
    contexts: dict[int, DeviceContext | None],
    device_id: int,
    config: RollupConfig,
) -> DeviceContext | None:
    """The device's context, read once per call of recompute_buckets (None: deleted)."""
    if device_id not in contexts:
        contexts[device_id] = _device_context(conn, device_id, config)
        conn.commit()
    return contexts[device_id]


def _drop_hour_of_deleted_device(conn: Connection, bucket: Bucket, include_frozen: bool) -> None:
    """A deleted device's hour goes with it, unless frozen (its raw readings may be gone)."""
    hour = bucket.hour_start.astimezone(UTC)
    if include_frozen or not is_frozen(hour, frozen_before(conn)):
        _delete_row(conn, bucket)
    conn.commit()


def _recompute_recorded(
    conn: Connection,
    database: str,
    bucket: Bucket,
    context: DeviceContext,
    factors: Sequence[EmissionFactor],
    config: RollupConfig,
    include_frozen: bool,
    result: RecomputeResult,
) -> tuple[bool, datetime | None]:
    """Recompute one bucket and count its outcome in ``result``: (recomputed, follow-on hour).

    Database outages and lock timeouts raise; any other failure is recorded in
    ``result.failed`` so that one bad bucket never stops the others.
    """
    try:
        follow, outcome = _recompute_locked(
            conn, database, bucket, context, factors, config, include_frozen
        )
    except TRANSIENT_DB_ERRORS:
        raise
    except LockTimeout:
        raise
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise
        result.failed.append((bucket, str(exc.orig)[:300]))
        return False, None
    except Exception as exc:  # one bad bucket never stops the others
        result.failed.append((bucket, f"{type(exc).__name__}: {exc}"[:300]))
        return False, None
    result.recomputed += 1
    result.removed += outcome == "removed"
    result.missing_factor += outcome == "no_factor"
    result.frozen += outcome == "frozen"
    return True, follow


def _refresh_site_days(
    engine: Engine, done: set[tuple[int, datetime]], config: RollupConfig
) -> None:
    """Recompute the site days holding the committed hours ``done``."""
    try:
        daily_site.refresh_days(
            engine,
            done,
            default_tz=config.organisation_timezone,
            lock_timeout_s=config.lock_timeout_s,
        )
    except LockNotAcquired as exc:
        raise LockTimeout(str(exc)) from exc


def _invalidate_days(engine: Engine, device_ids: set[int]) -> None:
    if not device_ids:
        return
    try:
        daily_site.invalidate_devices(engine, device_ids)
    except Exception:
        log.exception(
            "daily_site_invalidate_failed",
            devices=sorted(device_ids)[:20],
            effect="their sites' cached days may lag their hours until the hours are recomputed",
        )


def _device_context(conn: Connection, device_id: int, config: RollupConfig) -> DeviceContext | None:
    row = conn.execute(
        select(_devices.c.bidirectional, _sites.c.region, _sites.c.timezone)
        .select_from(_devices.outerjoin(_sites, _sites.c.id == _devices.c.site_id))
        .where(_devices.c.id == device_id)
    ).first()
    if row is None:
        return None
    return DeviceContext(
        bidirectional=bool(row.bidirectional),
        region=row.region or config.default_region,
        timezone=row.timezone or config.organisation_timezone,
    )


def _recompute_locked(
    conn: Connection,
    database: str,
    bucket: Bucket,
    context: DeviceContext,
    factors: Sequence[EmissionFactor],
    config: RollupConfig,
    include_frozen: bool = False,
) -> tuple[datetime | None, str]:
    name = lock_name(database, bucket.device_id, bucket.hour_start)
    try:
        with dialect_of(conn).exclusive(conn, name, config.lock_timeout_s):
            # Read under a shared lock in this transaction: the horizon cannot move until
            # this bucket is done, and a move seen here has its raw readings guarded.
            if not include_frozen and is_frozen(bucket.hour_start, frozen_before(conn, lock=True)):
                return None, _recompute_frozen_co2(conn, bucket, context, factors, config)
            return _recompute(conn, bucket, context, factors, config)
    except LockNotAcquired as exc:
        raise LockTimeout(str(exc)) from exc


def _recompute(
    conn: Connection,
    bucket: Bucket,
    context: DeviceContext,
    factors: Sequence[EmissionFactor],
    config: RollupConfig,
) -> tuple[datetime | None, str]:
    hour = bucket.hour_start.astimezone(UTC)
    samples, follow = _load_samples(conn, bucket.device_id, hour, config.max_gap)
    (computed,) = hourly_energy(
        samples,
        hour,
        hour + HOUR,
        max_gap=config.max_gap,
        counter_reset_tolerance_wh=config.counter_reset_tolerance_wh,
        bidirectional=context.bidirectional,
    )
    if is_empty(computed):
        _delete_row(conn, bucket)
        return follow, "removed"
    factor = _factor_for(factors, hour, context, config)
    row = stat_row(
        computed,
        device_id=bucket.device_id,
        factor=factor,
        factor_set=config.factor_set,
        computed_at=datetime.now(UTC),
    )
    upsert = dialect_of(conn).upsert(_stats, ["device_id", "hour_start"], row)
    stmt = upsert.on_conflict(
        {k: upsert.incoming[k] for k in row if k not in ("device_id", "hour_start")}
    )
    conn.execute(stmt)
    # The hour's quarters, from the same readings in the same transaction (quarter_hour.py).
    quarter_hour.store_quarters(
        conn,
        device_id=bucket.device_id,
        hour_start=hour,
        samples=samples,
        bidirectional=context.bidirectional,
        max_gap=config.max_gap,
        counter_reset_tolerance_wh=config.counter_reset_tolerance_wh,
        factor=factor,
        factor_set=config.factor_set,
        computed_at=row["computed_at"],
    )
    return follow, "no_factor" if factor is None else "stored"


def _factor_for(
    factors: Sequence[EmissionFactor], hour: datetime, context: DeviceContext, config: RollupConfig
) -> EmissionFactor | None:
    try:
        # Factors apply by the site's calendar date (carbon.select_factor's contract).
        return select_factor(
            factors,
            factor_set=config.factor_set,
            region=context.region,
            at=hour.astimezone(ZoneInfo(context.timezone)),
        )
    except FactorNotFound:
        return None


def _recompute_frozen_co2(
    conn: Connection,
    bucket: Bucket,
    context: DeviceContext,
    factors: Sequence[EmissionFactor],
    config: RollupConfig,
) -> str:
    """A frozen hour: its stored kWh are final; only its CO2 follows the factor set in force.

    Its quarters are restated the same way, from their own stored kWh, in this transaction
    (the raw readings they came from may be gone, so they are never recomputed either).
    """
    hour = bucket.hour_start.astimezone(UTC)
    where = (_stats.c.device_id == bucket.device_id, _stats.c.hour_start == hour)
    row = conn.execute(
        select(
            _stats.c.energy_kwh,
            _stats.c.unallocated_kwh,
            *_RESTATED_COLUMNS,
        ).where(*where)
    ).first()
    if row is None:
        return "frozen"  # nothing stored, and nothing may be computed from raw readings
    factor = _factor_for(factors, hour, context, config)
    computed_at = datetime.now(UTC)
    values = restated_co2(
        row.energy_kwh, row.unallocated_kwh, row.flags, factor, config.factor_set, computed_at
    )
    conn.execute(update(_stats).where(*where).values(values))
    if any(getattr(row, c.name) != values[c.name] for c in _RESTATED_COLUMNS):
        # The hour's CO2 changed outside a recompute from raw: its sites' days stop being
        # served in this very transaction (the next read rebuilds them), so no crash before
        # recompute_buckets refreshes them can leave a stale day served. Rare: a factor set
        # changed over frozen hours.
        sites = daily_site.sites_of_devices(conn, [bucket.device_id])
        daily_site.invalidate_sites(conn, sites.get(bucket.device_id, set()))
    quarter_hour.restate_co2(
        conn,
        device_id=bucket.device_id,
        hour_start=hour,
        factor=factor,
        factor_set=config.factor_set,
        computed_at=computed_at,
    )
    return "frozen"


def _delete_row(conn: Connection, bucket: Bucket) -> None:
    conn.execute(
        delete(_stats).where(
            _stats.c.device_id == bucket.device_id,
            _stats.c.hour_start == bucket.hour_start.astimezone(UTC),
        )
    )
    quarter_hour.delete_hour(conn, bucket.device_id, bucket.hour_start.astimezone(UTC))


def _to_sample(row: Row[Any, Any, Any, Any, Any, Any, Any]) -> EnergySample:
    return EnergySample(
        ts=row.ts,
        power_w=row.power_w,
        energy_wh=row.energy_wh,
        energy_export_wh=row.energy_export_wh,
        temperature_c=row.temperature_c,
        humidity_pct=row.humidity_pct,
        brightness_lux=row.brightness_lux,
    )


@dataclass(frozen=True, slots=True)
class _HourWindow:
    """One device's readings in one hour, and the queries for its neighbours."""

    conn: Connection
    device_id: int
    hour: datetime

    @property
    def end(self) -> datetime:
        return self.hour + HOUR

    def inside(self) -> list[EnergySample]:
        return [
            _to_sample(r)
            for r in self.conn.execute(
                select(*_SAMPLE_COLUMNS)
                .where(self._device, _readings.c.ts >= self.hour, _readings.c.ts < self.end)
                .order_by(_readings.c.ts)
            )
        ]

    def last_before(self, *conditions: Any) -> EnergySample | None:
        row = self.conn.execute(
            select(*_SAMPLE_COLUMNS)
            .where(self._device, _readings.c.ts < self.hour, *conditions)
            .order_by(_readings.c.ts.desc())
            .limit(1)
        ).first()
        return None if row is None else _to_sample(row)

    def first_after(self, *conditions: Any) -> EnergySample | None:
        row = self.conn.execute(
            select(*_SAMPLE_COLUMNS)
            .where(self._device, _readings.c.ts >= self.end, *conditions)
            .order_by(_readings.c.ts)
            .limit(1)
        ).first()
        return None if row is None else _to_sample(row)

    @property
    def _device(self) -> Any:
        return _readings.c.device_id == self.device_id


def _load_samples(
    conn: Connection, device_id: int, hour: datetime, max_gap: timedelta
) -> tuple[list[EnergySample], datetime | None]:
    """The hour's readings plus the neighbours each series needs; and the follow-on hour.

    A series (power, import counter, export counter) needs its own neighbours: the nearest
    reading may lack that field. Power only reaches max_gap; a counter's previous value
    matters however old it is (the increase across a gap is unallocated, not lost).
    """
    window = _HourWindow(conn, device_id, hour)
    inside = window.inside()
    before, after = window.last_before(), window.first_after()
    neighbours = {s.ts: s for s in (before, after) if s is not None}
    follow: datetime | None = None
    for name in ("power_w", *_COUNTERS):
        if not any(getattr(s, name) is not None for s in inside):
            continue
        if name == "power_w":
            found, candidate = _power_neighbours(window, before, after, max_gap), None
        else:
            found, candidate = _counter_neighbours(window, name, inside, before, after, max_gap)
        neighbours.update((s.ts, s) for s in found)
        if candidate is not None:
            follow = candidate if follow is None else min(follow, candidate)
    return [*inside, *neighbours.values()], follow


def _power_neighbours(
    window: _HourWindow,
    before: EnergySample | None,
    after: EnergySample | None,
    max_gap: timedelta,
) -> list[EnergySample]:
    """The nearest power readings on each side within max_gap, when the nearest have none."""
    has_power, ts = _readings.c.power_w.is_not(None), _readings.c.ts
    found: list[EnergySample | None] = []
    if before is None or before.power_w is None:
        found.append(window.last_before(has_power, ts >= window.hour - max_gap))
    if after is None or after.power_w is None:
        found.append(window.first_after(has_power, ts <= window.end + max_gap))
    return [s for s in found if s is not None]


def _counter_neighbours(
    window: _HourWindow,
    name: str,
    inside: Sequence[EnergySample],
    before: EnergySample | None,
    after: EnergySample | None,
    max_gap: timedelta,
) -> tuple[list[EnergySample], datetime | None]:
    """The counter's previous and next values however old, and the follow-on hour they make."""
    column = _readings.c[name]
    found: list[EnergySample | None] = []
    if before is None or getattr(before, name) is None:
        found.append(window.last_before(column.is_not(None)))
    next_counter = after if after is not None and getattr(after, name) is not None else None
    if next_counter is None:
        next_counter = window.first_after(column.is_not(None))
        found.append(next_counter)
    last_counter = max(s.ts for s in inside if getattr(s, name) is not None)
    follow = follow_on_hour(
        window.hour, last_counter, None if next_counter is None else next_counter.ts, max_gap
    )
    return [s for s in found if s is not None], follow


def buckets_in_range(
    engine: Engine,
    start: datetime,
    end: datetime,
    *,
    device_codes: Sequence[str] = (),
    other_factor_set_than: str | None = None,
) -> list[Bucket]:
    """Every (device, hour) in [start, end) with readings in the hour or a stored row.

    With ``other_factor_set_than``, only stored hours computed with another factor set.
    """
    start_utc = hour_floor(start)
    end_utc = hour_floor(end) + (HOUR if end != hour_floor(end) else timedelta(0))
    with engine.connect() as conn:
        device_ids: list[int] | None = None
        if device_codes:
            device_ids = list(
                conn.execute(
                    select(_devices.c.id).where(
                        _devices.c.code.in_([canonical_device_code(c) for c in device_codes])
                    )
                )
                .scalars()
                .all()
            )
            if not device_ids:
                return []
        found: set[tuple[int, datetime]] = set()
        stat_filter = [_stats.c.hour_start >= start_utc, _stats.c.hour_start < end_utc]
        if device_ids is not None:
            stat_filter.append(_stats.c.device_id.in_(device_ids))
        if other_factor_set_than is not None:
            stat_filter.append(
                or_(
                    _stats.c.factor_set.is_(None),
                    _stats.c.factor_set != other_factor_set_than,
                )
            )
        for device_id, hour in conn.execute(
            select(_stats.c.device_id, _stats.c.hour_start).where(and_(*stat_filter))
        ):
            found.add((device_id, hour))
        if other_factor_set_than is None:
            # Hours are cut in SQL (UTC storage, so no time zone tables are needed).
            hour_expr = dialect_of(conn).hour_text(_readings.c.ts)
            reading_filter = [_readings.c.ts >= start_utc, _readings.c.ts < end_utc]
            if device_ids is not None:
                reading_filter.append(_readings.c.device_id.in_(device_ids))
            for device_id, hour_text in conn.execute(
                select(_readings.c.device_id, hour_expr)
                .where(*reading_filter)
                .group_by(_readings.c.device_id, hour_expr)
            ):
                hour = datetime.strptime(hour_text, HOUR_TEXT_FORMAT).replace(tzinfo=UTC)
                found.add((device_id, hour))
    return [Bucket(device_id, hour) for device_id, hour in sorted(found)]
