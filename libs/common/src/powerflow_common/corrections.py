"""Operator corrections: overwrite a stored measurement on purpose, keep the audit, recompute.

The writer never overwrites a stored value (a second, different value is a counted conflict),
so a wrong value stays wrong until a person says otherwise. This is that path, shared by the
CLI (``powerflow correct``) and the API (``POST .../readings/{ts}/corrections``):

1. validate: the device and the reading exist, the column may be corrected, the value passes
   the same limits as ingest;
2. in ONE transaction, read the old values under a row lock (``SELECT ... FOR UPDATE``), update
   the row and insert one audit row per changed column (who, when, why, old and new value);
3. publish one PERSISTED message for every (device, hour) the reading touches, by the writer's
   own rule (:func:`powerflow_common.energy.touched_hours`), await its ack, and stamp the audit
   rows ``totals_republished_at``. When NATS does not acknowledge in time the correction stays
   committed, the audit rows stay unstamped (listed as stale totals), it is logged as an error,
   and ``powerflow corrections --republish-stale`` (or the same correction again) finishes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.js import JetStreamContext
from sqlalchemy import Connection, Engine, insert, select, update

from powerflow_common.backoff import jittered_delay
from powerflow_common.db.dialect import begin_write
from powerflow_common.db.horizon import BEYOND_RETENTION, frozen_before
from powerflow_common.db.models import DEVICES, READING_CORRECTIONS, READINGS
from powerflow_common.energy import hour_floor, touched_hours
from powerflow_common.errors import CorrectionRefused, CorrectionTargetMissing, Rejected
from powerflow_common.logs import get_logger
from powerflow_common.msgids import content_id
from powerflow_common.names import Names
from powerflow_common.retention import is_frozen
from powerflow_common.settings import Settings
from powerflow_common.validation import (
    EARLIEST_TS,
    Limits,
    canonical_device_code,
    limits_from_settings,
    validate,
)
from powerflow_common.wire import MEASUREMENT_FIELDS, Bucket, Persisted, Reading, json_encoder

log = get_logger(__name__)

# Columns that are not measurements: no total reads them, and a wrong one harms nothing.
NOT_CORRECTABLE: Mapping[str, str] = {
    "seq": "seq is the device's message counter, not a measurement",
    "firmware": "firmware is a label the device reports, not a measurement",
}
CORRECTABLE_FIELDS: tuple[str, ...] = tuple(
    f for f in MEASUREMENT_FIELDS if f not in NOT_CORRECTABLE
)
# The audit table's column widths.
MAX_REASON_CHARS = 255
MAX_CORRECTED_BY_CHARS = 128
# Readings are stored at millisecond precision: a finer timestamp can name no stored row.
_US_PER_MS = 1000
# How far back a listing may page at once.
MAX_LIST_LIMIT = 1000
# Stale corrections announced per PERSISTED message: at most a few hundred KiB of buckets,
# well under NATS's 1 MiB message limit.
STALE_PER_MESSAGE = 1000
# Backoff between attempts to announce a recompute while NATS does not answer.
_RETRY_BASE_S = 0.25
_RETRY_CAP_S = 2.0

_devices = DEVICES
_readings = READINGS
_corrections = READING_CORRECTIONS


@dataclass(frozen=True, slots=True)
class CorrectionRequest:
    """What a person asks: set these columns of the reading of ``device_code`` at ``ts``."""

    device_code: str
    ts: datetime
    values: Mapping[str, float | None]
    reason: str
    corrected_by: str


@dataclass(frozen=True, slots=True)
class CorrectionRecord:
    """One audit row: one column of one reading, changed by someone for a reason."""

    id: int
    device_code: str
    ts: datetime
    column_name: str
    old_value: float | None
    new_value: float
    reason: str
    corrected_by: str
    corrected_at: datetime
    totals_republished_at: datetime | None


@dataclass(frozen=True, slots=True)
class Applied:
    """What the transaction did: the new audit rows and what still needs a recompute."""

    device_id: int
    device_code: str
    ts: datetime
    changed: list[CorrectionRecord]
    unchanged: list[str]  # columns that already held the asked value: no audit row
    stale_ids: list[int]  # audit rows of this reading whose recompute is not yet acknowledged
    buckets: list[Bucket]


@dataclass(slots=True)
class CorrectionOutcome:
    """The result of a correction: what changed and whether the totals follow already."""

    applied: Applied
    totals_republished: bool
    error: str = ""  # why the recompute could not be announced
    hours: list[datetime] = field(default_factory=list)


def parse_assignments(assignments: Iterable[str]) -> dict[str, float]:
    """``["power_w=123.4", ...]`` as ``{"power_w": 123.4}``; CorrectionRefused when malformed."""
    values: dict[str, float] = {}
    for text in assignments:
        name, sep, raw = text.partition("=")
        name = name.strip()
        if not sep or not name:
            raise CorrectionRefused(
                "malformed_assignment", f"{text!r} is not COLUMN=VALUE, e.g. power_w=123.4"
            )
        try:
            values[name] = float(raw)
        except ValueError:
            raise CorrectionRefused(
                "malformed_value", f"{raw.strip()!r} for {name} is not a number"
            ) from None
    return values


def stored_ts(ts: datetime) -> datetime:
    """``ts`` as the stored key: UTC, and refused when it is naive or finer than a millisecond."""
    if ts.tzinfo is None:
        raise CorrectionRefused("timestamp_no_offset", "the timestamp needs a UTC offset")
    if ts.microsecond % _US_PER_MS:
        raise CorrectionRefused(
            "timestamp_precision",
            f"{ts.isoformat()} is finer than a millisecond; readings are stored in milliseconds",
        )
    return ts.astimezone(UTC)


def check_values(
    values: Mapping[str, float | None], *, bidirectional: bool, limits: Limits
) -> dict[str, float]:
    """The values when every column may be corrected and every value passes ingest's limits."""
    if not values:
        raise CorrectionRefused("nothing_to_correct", "name at least one column and its value")
    for name, value in values.items():
        if name in NOT_CORRECTABLE:
            raise CorrectionRefused(
                "column_not_correctable", f"{NOT_CORRECTABLE[name]}; it cannot be corrected"
            )
        if name not in CORRECTABLE_FIELDS:
            raise CorrectionRefused(
                "unknown_column",
                f"{name[:40]!r} is not a measurement column; "
                f"one of {', '.join(CORRECTABLE_FIELDS)}",
            )
        if value is None:
            # The writer fills empty columns from later messages (COALESCE), so an emptied value
            # would come back silently with the device's next replay of the same reading.
            raise CorrectionRefused(
                "null_value",
                f"{name} cannot be emptied (a replayed reading would refill it unseen); "
                "set the value it should have instead",
            )
    # Ingest's own rules on the values; the timestamp was checked when the row was stored, and
    # a fixed valid one here keeps an old stored row from failing the age check.
    numbers: dict[str, Any] = {name: float(v) for name, v in values.items() if v is not None}
    probe = Reading(
        device_code="correction", ts=EARLIEST_TS, bidirectional=bidirectional, **numbers
    )
    try:
        validate(probe, EARLIEST_TS, limits)
    except Rejected as exc:
        raise CorrectionRefused(exc.reason, exc.detail) from None
    return {name: float(v) for name, v in values.items() if v is not None}


def _check_people(request: CorrectionRequest) -> tuple[str, str]:
    reason, who = request.reason.strip(), request.corrected_by.strip()
    if not reason:
        raise CorrectionRefused("reason_missing", "say why the value is corrected (--reason)")
    if len(reason) > MAX_REASON_CHARS:
        raise CorrectionRefused("reason_too_long", f"reason longer than {MAX_REASON_CHARS}")
    if not who:
        raise CorrectionRefused("corrected_by_missing", "say who corrects the value (--by)")
    if len(who) > MAX_CORRECTED_BY_CHARS:
        raise CorrectionRefused(
            "corrected_by_too_long", f"name longer than {MAX_CORRECTED_BY_CHARS}"
        )
    return reason, who


def _device(conn: Connection, code: str) -> Any:
    code = canonical_device_code(code)  # the one rule every way in shares
    row = conn.execute(
        select(_devices.c.id, _devices.c.code, _devices.c.bidirectional).where(
            _devices.c.code == code
        )
    ).first()
    if row is None:
        raise CorrectionTargetMissing("unknown_device", f"no device with code {code[:80]!r}")
    return row


def _stale_ids(conn: Connection, device_id: int, ts: datetime) -> list[int]:
    c = _corrections.c
    return [
        int(i)
        for i in conn.execute(
            select(c.id)
            .where(c.device_id == device_id, c.ts == ts, c.totals_republished_at.is_(None))
            .order_by(c.id)
        ).scalars()
    ]


def apply_correction(
    engine: Engine,
    request: CorrectionRequest,
    *,
    limits: Limits,
    max_gap: timedelta,
    now: datetime | None = None,
) -> Applied:
    """Change the stored values and record the audit rows in one transaction.

    Raises CorrectionRefused (bad input) or CorrectionTargetMissing (no such device or
    reading); either way nothing is changed.
    """
    reason, who = _check_people(request)
    ts = stored_ts(request.ts)
    corrected_at = now or datetime.now(UTC)
    with begin_write(engine) as conn:
        device = _device(conn, request.device_code)
        # A frozen hour's stats are final (powerflow_common.retention): a corrected raw value
        # would change no total, so the correction is refused rather than silently ignored.
        if is_frozen(hour_floor(ts), frozen_before(conn, lock=True)):
            raise CorrectionRefused(
                BEYOND_RETENTION,
                f"{ts.isoformat()} is in an hour before the raw horizon: its stats are frozen "
                "(POWERFLOW_RAW_RETENTION_DAYS, docs/operations.md)",
            )
        values = check_values(request.values, bidirectional=device.bidirectional, limits=limits)
        # The row lock makes the old value the one this correction replaces, even when a
        # writer or another correction touches the same reading at the same moment.
        row = conn.execute(
            select(*[_readings.c[name] for name in values])
            .where(_readings.c.device_id == device.id, _readings.c.ts == ts)
            .with_for_update()
        ).first()
        if row is None:
            raise CorrectionTargetMissing(
                "unknown_reading",
                f"device {device.code!r} has no reading at {ts.isoformat()}; a correction changes "
                "a stored reading (send a missing one through ingest)",
            )
        old = row._asdict()
        changes = {name: v for name, v in values.items() if old[name] != v}
        changed: list[CorrectionRecord] = []
        if changes:
            conn.execute(
                update(_readings)
                .where(_readings.c.device_id == device.id, _readings.c.ts == ts)
                .values(**changes)
            )
            for name, new_value in changes.items():
                audit = {
                    "device_id": device.id,
                    "ts": ts,
                    "column_name": name,
                    "old_value": old[name],
                    "new_value": new_value,
                    "reason": reason,
                    "corrected_by": who,
                    "corrected_at": corrected_at,
                }
                key = conn.execute(insert(_corrections).values(**audit)).inserted_primary_key
                assert key is not None  # an INSERT of one row always has it
                changed.append(
                    CorrectionRecord(
                        id=int(key[0]),
                        device_code=device.code,
                        ts=ts,
                        column_name=name,
                        old_value=old[name],
                        new_value=new_value,
                        reason=reason,
                        corrected_by=who,
                        corrected_at=corrected_at,
                        totals_republished_at=None,
                    )
                )
        stale = _stale_ids(conn, device.id, ts)
    return Applied(
        device_id=device.id,
        device_code=device.code,
        ts=ts,
        changed=changed,
        unchanged=[name for name in values if name not in changes],
        stale_ids=stale,
        buckets=[Bucket(device.id, hour) for hour in touched_hours(ts, max_gap)],
    )


def persisted_message(buckets: Sequence[Bucket], audit_ids: Sequence[int]) -> tuple[bytes, str]:
    """The PERSISTED body for these buckets and its ``Nats-Msg-Id``.

    The id covers the buckets and the audit rows it announces, so a retried announcement of
    the same corrections is dropped as a duplicate and a different one never is.
    """
    ordered = sorted(buckets, key=lambda b: (b.device_id, b.hour_start))
    body = json_encoder.encode(
        Persisted(buckets=list(ordered), rows=0, committed_at=datetime.now(UTC))
    )
    key = ";".join(f"{b.device_id}@{b.hour_start.isoformat()}" for b in ordered)
    audits = ",".join(str(i) for i in sorted(audit_ids))
    return body, content_id("c", key.encode(), audits.encode())


async def announce(
    js: JetStreamContext | None,
    names: Names,
    buckets: Sequence[Bucket],
    audit_ids: Sequence[int],
    *,
    timeout_s: float,
    deadline_s: float,
) -> str:
    """Publish PERSISTED and await its ack, retrying until ``deadline_s``; "" or the error."""
    if js is None:
        return "no connection to NATS"
    body, msg_id = persisted_message(buckets, audit_ids)
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline_s
    attempt = 0
    while True:
        try:
            await js.publish(
                names.persisted_subject,
                body,
                timeout=timeout_s,
                headers={"Nats-Msg-Id": msg_id},
            )
            return ""
        except Exception as exc:  # any failure of the publish: retried, then reported
            error = f"{type(exc).__name__}: {str(exc)[:200]}".rstrip(": ")
            delay = jittered_delay(attempt, base_s=_RETRY_BASE_S, cap_s=_RETRY_CAP_S)
            if loop.time() + delay >= give_up:
                return error
            log.warning("correction_announce_retry", error=error, attempt=attempt)
            attempt += 1
            await asyncio.sleep(delay)


def mark_republished(engine: Engine, audit_ids: Sequence[int], at: datetime) -> None:
    """Stamp audit rows whose recompute JetStream acknowledged."""
    if not audit_ids:
        return
    with begin_write(engine) as conn:
        conn.execute(
            update(_corrections)
            .where(_corrections.c.id.in_(list(audit_ids)))
            .values(totals_republished_at=at)
        )


async def correct(
    engine: Engine,
    js: JetStreamContext | None,
    settings: Settings,
    request: CorrectionRequest,
) -> CorrectionOutcome:
    """Apply a correction and make every total follow; the whole path of CLI and API.

    The same correction again changes nothing but announces the recompute again while it
    was not acknowledged, so repeating a request whose answer was lost is always safe.
    """
    max_gap = timedelta(seconds=settings.max_gap_s)
    applied = await asyncio.to_thread(
        apply_correction,
        engine,
        request,
        limits=limits_from_settings(settings),
        max_gap=max_gap,
    )
    hours = [b.hour_start for b in applied.buckets]
    for record in applied.changed:
        log.warning(
            "reading_corrected",
            device=record.device_code,
            ts=record.ts.isoformat(),
            column=record.column_name,
            old_value=record.old_value,
            new_value=record.new_value,
            corrected_by=record.corrected_by,
            reason=record.reason,
        )
    if not applied.stale_ids:
        # Nothing changed now and every earlier correction's recompute was acknowledged.
        return CorrectionOutcome(applied=applied, totals_republished=True, hours=hours)
    error = await announce(
        js,
        settings.names,
        applied.buckets,
        applied.stale_ids,
        timeout_s=settings.nats_timeout_s,
        deadline_s=settings.correction_announce_deadline_s,
    )
    if error:
        log.error(
            "correction_totals_stale",
            device=applied.device_code,
            ts=applied.ts.isoformat(),
            hours=[h.isoformat() for h in hours],
            error=error,
            fix="powerflow corrections --republish-stale",
        )
        return CorrectionOutcome(
            applied=applied, totals_republished=False, error=error, hours=hours
        )
    await asyncio.to_thread(mark_republished, engine, applied.stale_ids, datetime.now(UTC))
    return CorrectionOutcome(applied=applied, totals_republished=True, hours=hours)


@dataclass(frozen=True, slots=True)
class RepublishResult:
    """What ``republish_stale`` did."""

    corrections: int  # whose recompute was acknowledged now
    buckets: int
    failed: str = ""  # why the rest could not be announced


async def republish_stale(
    engine: Engine,
    js: JetStreamContext | None,
    settings: Settings,
    *,
    device_code: str | None = None,
) -> RepublishResult:
    """Announce the recompute of every correction whose totals were not yet acknowledged."""
    max_gap = timedelta(seconds=settings.max_gap_s)
    c = _corrections.c

    def stale() -> list[Any]:
        query = (
            select(c.id, c.device_id, c.ts)
            .select_from(_corrections.join(_devices, _devices.c.id == c.device_id))
            .where(c.totals_republished_at.is_(None))
            .order_by(c.id)
        )
        with engine.connect() as conn:
            if device_code is not None:
                _device(conn, device_code)
                query = query.where(_devices.c.code == canonical_device_code(device_code))
            return list(conn.execute(query))

    rows = await asyncio.to_thread(stale)
    done_ids = done_buckets = 0
    for first in range(0, len(rows), STALE_PER_MESSAGE):
        chunk = rows[first : first + STALE_PER_MESSAGE]
        buckets = sorted(
            {Bucket(r.device_id, hour) for r in chunk for hour in touched_hours(r.ts, max_gap)},
            key=lambda b: (b.device_id, b.hour_start),
        )
        ids = [int(r.id) for r in chunk]
        error = await announce(
            js,
            settings.names,
            buckets,
            ids,
            timeout_s=settings.nats_timeout_s,
            deadline_s=settings.correction_announce_deadline_s,
        )
        if error:
            log.error("correction_totals_stale", corrections=len(rows) - done_ids, error=error)
            return RepublishResult(corrections=done_ids, buckets=done_buckets, failed=error)
        await asyncio.to_thread(mark_republished, engine, ids, datetime.now(UTC))
        done_ids += len(ids)
        done_buckets += len(buckets)
    return RepublishResult(corrections=done_ids, buckets=done_buckets)


def list_corrections(
    engine: Engine,
    device_code: str,
    *,
    since: datetime | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[CorrectionRecord]:
    """A device's corrections, newest first, made at or after ``since``, below ``before_id``."""
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise CorrectionRefused("limit_out_of_range", f"limit must be 1..{MAX_LIST_LIMIT}")
    if since is not None and since.tzinfo is None:
        raise CorrectionRefused("timestamp_no_offset", "since needs a UTC offset")
    c = _corrections.c
    with engine.connect() as conn:
        device = _device(conn, device_code)
        query = select(_corrections).where(c.device_id == device.id)
        if since is not None:
            query = query.where(c.corrected_at >= since)
        if before_id is not None:
            query = query.where(c.id < before_id)
        rows = conn.execute(query.order_by(c.id.desc()).limit(limit)).all()
    return [
        CorrectionRecord(
            id=int(r.id),
            device_code=device.code,
            ts=r.ts,
            column_name=r.column_name,
            old_value=r.old_value,
            new_value=r.new_value,
            reason=r.reason,
            corrected_by=r.corrected_by,
            corrected_at=r.corrected_at,
            totals_republished_at=r.totals_republished_at,
        )
        for r in rows
    ]
