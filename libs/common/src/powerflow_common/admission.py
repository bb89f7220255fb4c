"""Devices nobody enrolled: which wait for an operator, admitting them, and the legacy topic.

A device the writer sees for the first time (on an open lab listener, or posted over HTTP by
an operator) is registered *waiting* (``devices.admitted_at`` NULL): its readings and hourly
rows are kept, never dropped, but it changes no total and no report until an operator admits
it (``powerflow devices admit CODE``, the dashboard, or ``POST
/api/v1/devices/{code}/admission``). Which devices count is decided in
``powerflow_common.totals``; this module says who is admitted and lets an operator admit.

The prototype's shared topic ``power/measurement`` names the device only in the payload:
nothing proves who sent a reading there. The writer stores such a reading only for a device
enrolled as legacy (``devices.legacy_topic``) and not revoked; any other is dead-lettered with
reason ``legacy_not_enrolled``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from msgspec import Struct
from sqlalchemy import Connection, Engine, func, literal, select, union_all, update

from powerflow_common.db.dialect import begin_write
from powerflow_common.db.models import DEVICES, READINGS
from powerflow_common.errors import InvalidInput, NotFound
from powerflow_common.formats.original import LEGACY_TOPIC
from powerflow_common.logs import get_logger
from powerflow_common.validation import canonical_device_code

__all__ = [
    "LEGACY_NOT_ENROLLED",
    "LEGACY_TOPIC",
    "MAX_ADMIT_CODES",
    "MAX_WAITING_LISTED",
    "READINGS_COUNT_CAP",
    "AdmittedDevice",
    "DeviceStanding",
    "TooManyCodes",
    "UnknownDevices",
    "WaitingDevice",
    "admit_devices",
    "legacy_codes",
    "may_use_legacy_topic",
    "standing_of",
    "waiting_count",
    "waiting_devices",
]

# Dead-letter reason of a legacy-topic reading whose device may not use that topic.
LEGACY_NOT_ENROLLED = "legacy_not_enrolled"
# One admission is one transaction; a fleet larger than this is admitted in several.
MAX_ADMIT_CODES = 1_000
# The overview lists at most this many waiting devices (their count is always exact).
MAX_WAITING_LISTED = 100
# Readings of a waiting device are counted up to this: an exact count of a device that has
# waited for months on an open listener would read its whole history at every overview.
READINGS_COUNT_CAP = 100_000

log = get_logger(__name__)

_devices = DEVICES
_readings = READINGS


class UnknownDevices(NotFound, LookupError):
    """Codes with no device: nothing to admit (nothing was admitted)."""

    def __init__(self, codes: Sequence[str]) -> None:
        self.codes = list(codes)
        shown = ", ".join(repr(c) for c in self.codes[:10])
        more = f" and {len(self.codes) - 10} more" if len(self.codes) > 10 else ""
        super().__init__(
            f"No device with code {shown}{more}: nothing to admit. A device exists once it has "
            "reported (it then waits for admission) or was enrolled; list them with "
            "`powerflow devices list` or GET /api/v1/devices."
        )


class TooManyCodes(InvalidInput, ValueError):
    """More codes than one admission takes."""


@dataclass(frozen=True, slots=True)
class AdmittedDevice:
    """A device after admission; ``newly``: this call admitted it (else it already was)."""

    code: str
    admitted_at: datetime
    admitted_by: str | None
    newly: bool


class WaitingDevice(Struct, frozen=True):
    """A device waiting for admission: seen and kept, counted in no total.

    The one type of it: the API serves it as is (GET /summary's ``waiting.devices``).
    """

    code: str
    site_id: int | None
    payload_format: str
    first_seen_at: datetime
    last_seen_at: datetime
    readings: int  # stored readings, counted up to READINGS_COUNT_CAP
    readings_capped: bool  # the device has at least READINGS_COUNT_CAP: readings is a floor


@dataclass(frozen=True, slots=True)
class DeviceStanding:
    """What the writer needs to know about a known device before storing its readings."""

    device_id: int
    admitted: bool
    legacy_topic: bool
    revoked: bool


def may_use_legacy_topic(standing: DeviceStanding | None) -> bool:
    """Whether a reading on the shared legacy topic may be stored for this device.

    Only a device enrolled as legacy and not revoked: on that topic the payload alone names
    the device, so an unknown code there is a guess or a forgery, never a new device.
    """
    return standing is not None and standing.legacy_topic and not standing.revoked


def legacy_codes(engine: Engine) -> frozenset[str]:
    """Codes whose readings on the shared legacy topic are accepted (``may_use_legacy_topic``):
    the live view shows no other reading from that topic, as the writer stores none."""
    d = _devices.c
    with engine.connect() as conn:
        rows = conn.execute(select(d.code).where(d.legacy_topic, d.revoked_at.is_(None)))
        return frozenset(r.code for r in rows)


def standing_of(conn: Connection, codes: Iterable[str]) -> dict[str, DeviceStanding]:
    """Admission, legacy-topic and revocation state of the known devices among ``codes``."""
    wanted = sorted({canonical_device_code(c) for c in codes})
    if not wanted:
        return {}
    d = _devices.c
    rows = conn.execute(
        select(d.code, d.id, d.admitted_at, d.legacy_topic, d.revoked_at).where(d.code.in_(wanted))
    )
    return {
        r.code: DeviceStanding(
            device_id=r.id,
            admitted=r.admitted_at is not None,
            legacy_topic=bool(r.legacy_topic),
            revoked=r.revoked_at is not None,
        )
        for r in rows
    }


def admit_devices(
    engine: Engine, codes: Iterable[str], *, by: str, now: datetime | None = None
) -> list[AdmittedDevice]:
    """Admit these devices (all or none), for their whole history; in the order given.

    Already admitted devices keep when and by whom. Raises UnknownDevices when a code has
    no device (nothing is admitted then) and TooManyCodes beyond MAX_ADMIT_CODES. Nothing
    needs recomputing: a waiting device's hourly rows exist, only totals ignored them.
    """
    wanted = list(dict.fromkeys(canonical_device_code(c.strip()) for c in codes))
    if not wanted:
        raise UnknownDevices([])
    if len(wanted) > MAX_ADMIT_CODES:
        raise TooManyCodes(f"at most {MAX_ADMIT_CODES} devices per admission, got {len(wanted)}")
    at = (now or datetime.now(UTC)).astimezone(UTC)
    d = _devices.c
    with begin_write(engine) as conn:
        # Locked: two admissions of one device at once leave one admitted_at and admitted_by.
        before = {
            r.code: r
            for r in conn.execute(
                select(d.code, d.admitted_at, d.admitted_by)
                .where(d.code.in_(wanted))
                .with_for_update()
            )
        }
        unknown = [c for c in wanted if c not in before]
        if unknown:
            raise UnknownDevices(unknown)
        waiting = [c for c in wanted if before[c].admitted_at is None]
        if waiting:
            conn.execute(
                update(_devices)
                .where(d.code.in_(waiting), d.admitted_at.is_(None))
                .values(admitted_at=at, admitted_by=by[:128])
            )
            # Who counts on their sites changed: those sites' cached days are not served.
            from powerflow_common import daily_site  # (daily_site imports queries, which is big)

            ids = conn.execute(select(d.id).where(d.code.in_(waiting))).scalars().all()
            sites = daily_site.sites_of_devices(conn, ids)
            daily_site.invalidate_sites(conn, {s for found in sites.values() for s in found})
    for code in waiting:
        log.info("device_admitted", device_code=code, by=by[:128])
    return [
        AdmittedDevice(c, at, by[:128], True)
        if before[c].admitted_at is None
        else AdmittedDevice(c, before[c].admitted_at, before[c].admitted_by, False)
        for c in wanted
    ]


def waiting_count(conn: Connection, *, site_id: int | None = None) -> int:
    """Devices waiting for admission (on this site, when given)."""
    query = select(func.count()).select_from(_devices).where(_devices.c.admitted_at.is_(None))
    if site_id is not None:
        query = query.where(_devices.c.site_id == site_id)
    return int(conn.execute(query).scalar_one())


def waiting_devices(
    conn: Connection, limit: int, *, site_id: int | None = None
) -> list[WaitingDevice]:
    """The waiting devices most recently seen first (at most ``limit``), with their readings."""
    limit = max(0, min(limit, MAX_WAITING_LISTED))
    d = _devices.c
    query = select(
        d.id, d.code, d.site_id, d.payload_format, d.first_seen_at, d.last_seen_at
    ).where(d.admitted_at.is_(None))
    if site_id is not None:
        query = query.where(d.site_id == site_id)
    rows = list(conn.execute(query.order_by(d.last_seen_at.desc(), d.code).limit(limit)))
    counts = _capped_reading_counts(conn, [r.id for r in rows])
    return [
        WaitingDevice(
            code=r.code,
            site_id=r.site_id,
            payload_format=r.payload_format,
            first_seen_at=r.first_seen_at,
            last_seen_at=r.last_seen_at,
            readings=counts.get(r.id, 0),
            readings_capped=counts.get(r.id, 0) >= READINGS_COUNT_CAP,
        )
        for r in rows
    ]


def _capped_reading_counts(conn: Connection, device_ids: Sequence[int]) -> dict[int, int]:
    """Each device's stored readings up to READINGS_COUNT_CAP, in one statement."""
    if not device_ids:
        return {}
    r = _readings.c
    parts = []
    for device_id in device_ids:
        capped = (
            select(literal(1).label("one"))
            .where(r.device_id == device_id)
            .limit(READINGS_COUNT_CAP)
            .subquery()
        )
        parts.append(
            select(literal(device_id).label("device_id"), func.count().label("n")).select_from(
                capped
            )
        )
    return {int(row.device_id): int(row.n) for row in conn.execute(union_all(*parts))}
