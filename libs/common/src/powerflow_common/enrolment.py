"""Device enrolment: a device row, broker credentials of its own, its own topics only.

An enrolled device ``CODE`` gets the broker account ``device-CODE`` (the broker's
``use_username_as_clientid`` makes the username its client id, so no other account can take
over its session) with a random password, and may publish only to the topics of the formats
it was enrolled with (``PayloadFormat.device_topics``), plus the prototype's shared
``power/measurement`` when enrolled as legacy. Nobody reads the password back: it is shown
once and stored only by the broker (hashed).

The database and the broker are two stores with no common transaction. The order of the two
steps keeps one invariant through any failure between them: **the broker grants access only
to a device the database records as enrolled**. Enrolling writes the database first, then
the broker; revoking removes the broker account first, then records it. A failure in between
leaves at worst a device recorded as enrolled that has no account (it can publish nothing;
``list`` shows it, enrolling again repairs it), never an account the database does not know.
Enrolments and revocations of one code are serialised by a named database lock, so two
operators at once cannot leave the broker holding a password neither was shown.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import DBAPIError

from powerflow_common.db.dialect import LOCK_NAME_MAX, LockNotAcquired, begin_write, dialect_of
from powerflow_common.db.models import DEVICES
from powerflow_common.errors import EnrolmentError, Rejected
from powerflow_common.formats import PayloadFormat, find_format, owner_in_topic
from powerflow_common.formats.registry import FORMATS
from powerflow_common.validation import check_device_code

DEVICE_USERNAME_PREFIX = "device-"
# The prototype's shared topic: the payload alone names the device, so nothing proves who
# sent a reading there (docs/devices.md). Granted only to devices enrolled as legacy.
LEGACY_TOPIC = "power/measurement"
DEFAULT_FORMAT = "original"
# 24 random bytes: 192 bits, 32 URL-safe characters, which fit Tasmota's and Shelly's
# password fields and need no escaping in a Tasmota command or a YAML file.
PASSWORD_BYTES = 24
# Codes that are a topic level other formats give a fixed meaning to. A device code is one
# level of its own topics; were it one of these, a device's grants would cover another
# format's topics of another device: a Shelly enrolled as ``emon`` could publish
# ``emon/status/P1``, emonhub's reading of a node ``status``; a Tasmota enrolled as
# ``status`` could publish ``tele/status/switch:0``, a Shelly ``tele``'s reading.
# libs/common/tests/test_device_topics.py checks that this list is exactly what is needed.
RESERVED_CODES = frozenset({"power", "tele", "emon", "status", "events"})
LIST_LIMIT_MAX = 10_000  # devices per page of ``list_enrolments``
LOCK_TIMEOUT_S = 10.0  # another enrolment of the same code: broker round trips, seconds

_devices = DEVICES


class DeviceAccounts(Protocol):
    """The broker accounts enrolment needs; every ``broker_admin.AccountAdmin`` has them."""

    def set_client(
        self,
        username: str,
        password: str | None,
        *,
        publish: Sequence[str] = (),
        subscribe: Sequence[str] = (),
        textname: str | None = None,
    ) -> None:
        """Create or replace an account and its own role."""
        ...

    def remove_client(self, username: str) -> bool:
        """Delete an account (disconnecting its client); False if there was none."""
        ...

    def list_clients(self) -> list[str]:
        """Every account's username."""
        ...


@dataclass(frozen=True, slots=True)
class Enrolment:
    """What a device needs to publish; ``password`` exists only here, shown once."""

    code: str
    username: str
    client_id: str
    password: str = field(repr=False)  # a logged Enrolment must not carry it
    formats: tuple[str, ...]
    topic: str  # the first format's main topic (or topic pattern)
    topics: tuple[str, ...]  # every topic the broker lets it publish to
    legacy: bool
    enrolled_at: datetime
    created: bool  # a new device row (else an existing device, password rotated)


@dataclass(frozen=True, slots=True)
class Revocation:
    """What revoking did."""

    code: str
    account_removed: bool  # the broker had an account (its client, if any, is disconnected)
    revoked_at: datetime | None  # None: no device row recorded it (an account without one)


@dataclass(frozen=True, slots=True)
class EnrolmentState:
    """One device as ``devices list`` shows it."""

    code: str
    state: str  # enrolled, revoked, not enrolled; plus a warning when the broker disagrees
    enrolled_at: datetime | None
    revoked_at: datetime | None
    admitted_at: datetime | None
    admitted_by: str | None
    legacy: bool
    payload_format: str
    last_seen_at: datetime
    has_account: bool | None  # None: the broker was not asked


@dataclass(frozen=True, slots=True)
class EnrolmentListing:
    """A page of devices, and broker device accounts that no enrolled device explains."""

    devices: list[EnrolmentState]
    unexplained_accounts: list[str]


def device_username(code: str) -> str:
    """The broker username of a device, which is also its client id."""
    return f"{DEVICE_USERNAME_PREFIX}{code}"


def new_password() -> str:
    """A fresh random device password (``PASSWORD_BYTES`` of entropy)."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def enrolment_code(code: str) -> str:
    """The canonical form of a code that may be enrolled; EnrolmentError otherwise."""
    try:
        canonical = check_device_code(code)
    except Rejected as exc:
        raise EnrolmentError("invalid_device_code", exc.detail) from None
    if canonical in RESERVED_CODES:
        raise EnrolmentError(
            "reserved_code",
            f"{canonical!r} is a topic level other payload formats use "
            f"({', '.join(sorted(RESERVED_CODES))} are reserved); choose another code",
        )
    return canonical


def payload_formats(names: Sequence[str]) -> tuple[PayloadFormat, ...]:
    """The named formats in the order given (the first is the device's), without repeats."""
    unique = tuple(dict.fromkeys(names)) or (DEFAULT_FORMAT,)
    unknown = [n for n in unique if n not in FORMATS]
    if unknown:
        raise EnrolmentError(
            "unknown_format",
            f"unknown payload format(s) {', '.join(unknown)}; known: {', '.join(FORMATS)}",
        )
    return tuple(FORMATS[n] for n in unique)


def publish_topics(code: str, formats: Sequence[PayloadFormat], *, legacy: bool) -> tuple[str, ...]:
    """Every topic an enrolled device may publish to."""
    topics = [t for fmt in formats for t in fmt.device_topics(code)]
    if legacy:
        topics.append(LEGACY_TOPIC)
    return tuple(dict.fromkeys(topics))


def topic_owner(topic: str, formats: Sequence[PayloadFormat] | None = None) -> str | None:
    """The code whose device grants cover ``topic`` (``shelly1/status/switch:0``: ``shelly1``).

    None for the legacy topic and for topics no device grant covers. On a closed broker a
    reading on such a topic was published by the account ``device-<owner>``; the readings
    of a multi-channel device (``shelly1-0``, ``tele`` channels ``CODE-2``) belong to it
    (``formats.owns``, checked by ingest for every message).
    """
    candidates = tuple(formats if formats is not None else FORMATS.values())
    # The format that decodes the topic decides (``emon/online`` is emonhub's node
    # ``online``, not the availability topic of a Shelly ``emon``, a reserved code); a topic
    # no format decodes (a last will) belongs to the first grant that covers it.
    claimer = find_format(candidates, topic)
    for fmt in (claimer,) if claimer is not None else candidates:
        owner = owner_in_topic(fmt, topic)
        if owner is not None:
            return owner
    return None


def enroll_device(
    engine: Engine,
    accounts: DeviceAccounts,
    code: str,
    *,
    formats: Sequence[str] = (DEFAULT_FORMAT,),
    legacy: bool = False,
    by: str,
    now: datetime | None = None,
) -> Enrolment:
    """Create or update the device and give it fresh broker credentials (a new password).

    The device is admitted (it counts) if it was not already; its first format becomes its
    ``payload_format``. A device that does not exist yet gets ``first_seen_at`` and
    ``last_seen_at`` set to the enrolment time, the moment powerflow first knew it (the
    columns are NOT NULL; the writer moves them to its readings' times with LEAST/GREATEST).
    """
    canonical = enrolment_code(code)
    chosen = payload_formats(formats)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    username = device_username(canonical)
    topics = publish_topics(canonical, chosen, legacy=legacy)
    password = new_password()
    with _code_lock(engine, canonical):
        # 1. The database says "enrolled" before the broker grants anything.
        with begin_write(engine) as conn:
            created = _record_enrolment(
                conn, canonical, fmt=chosen[0].name, legacy=legacy, by=by, now=now
            )
        # 2. The broker account (replaced, so a re-enrolment rotates the password).
        try:
            accounts.set_client(username, password, publish=topics, textname=canonical)
        except Exception as exc:  # whatever the broker client raises: one clear error
            raise EnrolmentError(
                "broker_failed",
                f"the device {canonical!r} is recorded as enrolled but the broker did not "
                f"take its credentials ({type(exc).__name__}: {exc}); it can publish "
                "nothing. Enroll it again once the broker answers.",
            ) from exc
    return Enrolment(
        code=canonical,
        username=username,
        client_id=username,
        password=password,
        formats=tuple(f.name for f in chosen),
        topic=chosen[0].device_topics(canonical)[0],
        topics=topics,
        legacy=legacy,
        enrolled_at=now,
        created=created,
    )


def _record_enrolment(
    conn: Connection, code: str, *, fmt: str, legacy: bool, by: str, now: datetime
) -> bool:
    """Insert or update the device row as enrolled; True if the row is new."""
    d = _devices
    row = conn.execute(
        select(d.c.id, d.c.admitted_at).where(d.c.code == code).with_for_update()
    ).first()
    values = {
        "enrolled_at": now,
        "revoked_at": None,
        "legacy_topic": legacy,
        "payload_format": fmt,
    }
    if row is None:
        conn.execute(
            d.insert().values(
                code=code,
                first_seen_at=now,
                last_seen_at=now,
                admitted_at=now,
                admitted_by=by,
                **values,
            )
        )
        return True
    if row.admitted_at is None:
        values |= {"admitted_at": now, "admitted_by": by}
    conn.execute(d.update().where(d.c.id == row.id).values(**values))
    return False


def revoke_device(
    engine: Engine, accounts: DeviceAccounts, code: str, *, now: datetime | None = None
) -> Revocation:
    """Remove the device's broker account at once (its open connection is closed), then
    record the revocation. Its stored readings stay and keep counting (it stays admitted);
    it may no longer use the legacy topic either. Revoking again is harmless."""
    try:
        canonical = check_device_code(code)
    except Rejected as exc:
        raise EnrolmentError("invalid_device_code", exc.detail) from None
    now = (now or datetime.now(UTC)).astimezone(UTC)
    username = device_username(canonical)
    with _code_lock(engine, canonical):
        with engine.connect() as conn:
            row = conn.execute(
                select(_devices.c.id, _devices.c.revoked_at).where(_devices.c.code == canonical)
            ).first()
        # 1. The broker first: from here on the device can publish nothing.
        try:
            removed = accounts.remove_client(username)
        except Exception as exc:  # whatever the broker client raises: one clear error
            raise EnrolmentError(
                "broker_failed",
                f"the broker did not remove {username!r} ({type(exc).__name__}: {exc}); "
                "nothing was changed: the device still has access. Revoke it again.",
            ) from exc
        if row is None:
            if not removed:
                raise EnrolmentError("unknown_device", f"no device {canonical!r} and no account")
            return Revocation(canonical, account_removed=True, revoked_at=None)
        # 2. Then the database. Readings that the shared legacy topic names it by stop
        # counting too: revoking means that nothing new from this device is believed.
        revoked_at = row.revoked_at or now
        try:
            with begin_write(engine) as conn:
                conn.execute(
                    _devices.update()
                    .where(_devices.c.id == row.id)
                    .values(revoked_at=revoked_at, legacy_topic=False)
                )
        except DBAPIError as exc:
            raise EnrolmentError(
                "database_failed",
                f"the broker account of {canonical!r} is removed (it has no access), but the "
                f"revocation was not recorded ({exc.orig}); revoke it again.",
            ) from exc
    return Revocation(canonical, account_removed=removed, revoked_at=revoked_at)


def list_enrolments(
    engine: Engine,
    accounts: DeviceAccounts | None = None,
    *,
    after: str | None = None,
    limit: int = 500,
) -> EnrolmentListing:
    """Devices by code (a page of at most ``limit`` after the code ``after``); with
    ``accounts``, each device's state is checked against the broker's accounts."""
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise EnrolmentError("bad_limit", f"limit must be 1..{LIST_LIMIT_MAX}, not {limit}")
    d = _devices
    query = select(
        d.c.code,
        d.c.enrolled_at,
        d.c.revoked_at,
        d.c.admitted_at,
        d.c.admitted_by,
        d.c.legacy_topic,
        d.c.payload_format,
        d.c.last_seen_at,
    ).order_by(d.c.code)
    if after is not None:
        query = query.where(d.c.code > after)
    usernames = None if accounts is None else _usernames(accounts)
    with engine.connect() as conn:
        rows = conn.execute(query.limit(limit)).all()
        unexplained = [] if usernames is None else _unexplained(conn, usernames)
    states = []
    for row in rows:
        enrolled = row.enrolled_at is not None and row.revoked_at is None
        has_account = None if usernames is None else device_username(row.code) in usernames
        states.append(
            EnrolmentState(
                code=row.code,
                state=_state(enrolled, row.revoked_at is not None, has_account),
                enrolled_at=row.enrolled_at,
                revoked_at=row.revoked_at,
                admitted_at=row.admitted_at,
                admitted_by=row.admitted_by,
                legacy=bool(row.legacy_topic),
                payload_format=row.payload_format,
                last_seen_at=row.last_seen_at,
                has_account=has_account,
            )
        )
    return EnrolmentListing(states, unexplained)


def _usernames(accounts: DeviceAccounts) -> set[str]:
    try:
        return set(accounts.list_clients())
    except Exception as exc:  # whatever the broker client raises: one clear error
        raise EnrolmentError(
            "broker_failed", f"the broker did not list its accounts ({type(exc).__name__}: {exc})"
        ) from exc


def _state(enrolled: bool, revoked: bool, has_account: bool | None) -> str:
    state = "enrolled" if enrolled else "revoked" if revoked else "not enrolled"
    if enrolled and has_account is False:
        return f"{state} (no broker account: enroll again)"
    if not enrolled and has_account:
        return f"{state} (HAS A BROKER ACCOUNT: revoke it)"
    return state


def _unexplained(conn: Connection, usernames: set[str]) -> list[str]:
    """Device accounts whose code is not an enrolled device (an interrupted revoke, or an
    account made by hand): each one is access nobody recorded."""
    codes = {
        u.removeprefix(DEVICE_USERNAME_PREFIX): u
        for u in usernames
        if u.startswith(DEVICE_USERNAME_PREFIX)
    }
    if not codes:
        return []
    enrolled = set(
        conn.execute(
            select(_devices.c.code).where(
                _devices.c.code.in_(list(codes)),
                _devices.c.enrolled_at.is_not(None),
                _devices.c.revoked_at.is_(None),
            )
        ).scalars()
    )
    return sorted(u for code, u in codes.items() if code not in enrolled)


@contextlib.contextmanager
def _code_lock(engine: Engine, code: str) -> Iterator[None]:
    """Serialise enrolments and revocations of one code across processes: a named lock
    (MySQL GET_LOCK; SQLite a file lock beside the database), named after the database and
    the code, released by itself when its holder dies."""
    database = engine.url.database or ""
    digest = hashlib.sha256(f"{database}\x00{code}".encode()).hexdigest()
    name = f"pf-enrol-{digest}"[:LOCK_NAME_MAX]
    try:
        with dialect_of(engine).named_lock(engine, name, LOCK_TIMEOUT_S):
            yield
    except LockNotAcquired:
        raise EnrolmentError(
            "busy", f"another enrolment or revocation of {code!r} is running; try again"
        ) from None
