"""The lease edge: ingest's slot leases in a JetStream key-value bucket with a TTL.

The bucket's entries expire after the lease TTL (the stream's max age). Each round, an
instance puts its member heartbeat, renews its slot leases by compare-and-set on their
revision, reads who holds what and follows ``ingest_slots.plan``: releases above its
quota, claims free slots up to it (``create``: only if absent). A claim that loses the race
is simply not made; so a slot has one holder at a time in the bucket.

In time too: a holder lets go of a slot (disconnects its MQTT session) at
``hold_deadline``, measured from when it *sent* its last successful renewal, which is
before the server stored it; the server expires the entry a TTL after storing it, and only
then can another instance claim it. A watchdog task drops expired slots even while a
renewal hangs. A release on purpose disconnects first and deletes the lease after.

What to do with a slot is the handler's (``powerflow_ingest.slots``): ``acquired`` starts
its MQTT session, ``lost`` returns once the session is disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from powerflow_common.ingest_slots import (
    MEMBER_KEY_PREFIX,
    LeaseRecord,
    decode_record,
    encode_record,
    hold_deadline,
    member_key,
    plan,
    renew_interval_s,
    slot_key,
)
from powerflow_common.logs import get_logger
from powerflow_common.names import Names, kv_stream
from powerflow_ingest import metrics

log = get_logger(__name__)

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class SlotHandler(Protocol):
    """Starts and stops a slot's MQTT session."""

    async def acquired(self, slot: int) -> None: ...

    async def lost(self, slot: int) -> None: ...


def member_id(instance: str) -> str:
    """This process's name, unique among live instances (replicas share their instance name)."""
    host = _KEY_UNSAFE.sub("_", socket.gethostname())[:40]
    return f"{instance}-{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def leases_stream(names: Names) -> str:
    """The stream behind the bucket (JetStream names a bucket's stream KV_<bucket>)."""
    return kv_stream(names.ingest_leases_bucket)


async def open_leases_bucket(
    js: JetStreamContext, names: Names, ttl_s: float, replicas: int = 1
) -> tuple[KeyValue, float]:
    """The bucket (made on first use with ``ttl_s``) and the TTL this instance must count with.

    A holder's deadline must come before the server can expire its lease, so the TTL is never
    shortened under running instances (they count with the longer one): a longer setting is
    applied at once (their leases then only outlive their deadlines), a shorter one only when
    no instance is live (a full restart); meanwhile this one counts with the shorter.
    """
    bucket = names.ingest_leases_bucket
    try:
        kv = await js.key_value(bucket)
    except BucketNotFoundError:
        kv = await js.create_key_value(
            KeyValueConfig(
                bucket=bucket,
                description="ingest slot leases: which instance holds which MQTT client id",
                history=1,
                ttl=ttl_s,
                storage=StorageType.FILE,
                # On a cluster the leases must survive a node like the readings do: with one
                # copy, losing its node would stop every ingest instance's renewals at once.
                replicas=replicas,
            )
        )
        return kv, ttl_s
    stream = leases_stream(names)
    info = await js.stream_info(stream, subjects_filter=f"$KV.{bucket}.{MEMBER_KEY_PREFIX}>")
    current_s = info.config.max_age or 0.0  # seconds (nats-py converts)
    if abs(current_s - ttl_s) < 1e-3:
        return kv, ttl_s
    live = bool(info.state.subjects)
    if ttl_s > current_s or not live:
        log.warning("ingest_lease_ttl_changed", bucket=bucket, was_s=current_s, now_s=ttl_s)
        await js.update_stream(info.config.evolve(max_age=ttl_s))
        return kv, ttl_s
    log.warning(
        "ingest_lease_ttl_kept",
        bucket=bucket,
        bucket_ttl_s=current_s,
        setting_s=ttl_s,
        detail="instances are running with the longer TTL; this one lets go by its own"
        " shorter one, and the bucket takes it at a restart with none running",
    )
    return kv, ttl_s


@dataclass(slots=True)
class Held:
    """A slot this instance holds: its lease's revision and when it must let go."""

    revision: int
    deadline: float


class LeaseKeeper:
    """Holds this instance's share of the slots; see the module's docstring."""

    def __init__(
        self,
        *,
        js: JetStreamContext,
        kv: KeyValue,
        names: Names,
        member: str,
        slots: int,
        ttl_s: float,
        handler: SlotHandler,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._js = js
        self._kv = kv
        self._stream = leases_stream(names)
        self._prefix = f"$KV.{names.ingest_leases_bucket}."
        self.member = member
        self._slots = slots
        self._ttl_s = ttl_s
        self._handler = handler
        self._clock = clock
        self.held: dict[int, Held] = {}
        self._lock = asyncio.Lock()  # one change of holdings at a time (round vs watchdog)
        self._member_revision: int | None = None
        self._changed = asyncio.Event()
        self._closing = False
        self._renew_failing: set[int] = set()  # said once per outage, not every round

    @property
    def slots_held(self) -> list[int]:
        return sorted(self.held)

    # --- the bucket -----------------------------------------------------------------------

    def _record(self) -> bytes:
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        return encode_record(LeaseRecord(owner=self.member, renewed_at=now))

    async def _owner(self, key: str) -> tuple[str | None, int | None]:
        """Who holds ``key`` and its revision; (None, None) when free (absent, expired, deleted)."""
        try:
            entry = await self._kv.get(key)
        except NotFoundError:  # absent, aged out, or deleted (KeyDeletedError)
            return None, None
        record = decode_record(entry.value) if entry.value else None
        return (record.owner if record else None), entry.revision

    async def read_holders(self) -> dict[int, str | None]:
        """Every slot's holder as the bucket says now."""
        holders: dict[int, str | None] = {}
        for slot in range(self._slots):
            holders[slot], _ = await self._owner(slot_key(slot))
        return holders

    async def read_members(self) -> list[str]:
        """The live instances: members whose heartbeat has not expired."""
        # The member keys present, in one request (the stream's subjects), then each read.
        info = await self._js.stream_info(
            self._stream, subjects_filter=f"{self._prefix}{MEMBER_KEY_PREFIX}>"
        )
        members = []
        for subject in info.state.subjects or {}:
            key = subject.removeprefix(self._prefix)
            owner, _ = await self._owner(key)
            if owner is not None:
                members.append(owner)
        return members

    # --- one round ------------------------------------------------------------------------

    async def round(self) -> None:
        """Heartbeat, renew, then release or claim by the plan."""
        async with self._lock:
            # Renewals first: they are what keeps sessions alive when NATS is slow.
            for slot in list(self.held):
                await self._renew(slot)
            self._member_revision = await self._kv.put(member_key(self.member), self._record())
            members = await self.read_members()
            holders = await self.read_holders()
            for slot, owner in holders.items():
                if owner == self.member and slot not in self.held:
                    # Dropped here, not yet expired there: nobody's to claim until it expires.
                    holders[slot] = "(expiring)"
            todo = plan(self.member, members, holders, self._slots)
            for slot in todo.release:
                await self._release(slot, why="balance")
            for slot in todo.claim:
                await self._claim(slot)
            metrics.SLOTS_HELD.set(len(self.held))

    async def _renew(self, slot: int) -> None:
        held = self.held.get(slot)
        if held is None:
            return  # the watchdog let it go meanwhile
        sent = self._clock()
        try:
            try:
                revision = await self._kv.update(slot_key(slot), self._record(), last=held.revision)
            except KeyWrongLastSequenceError:
                owner, revision_now = await self._owner(slot_key(slot))
                if owner != self.member or revision_now is None:
                    await self._drop(slot, why="taken" if owner else "expired")
                    return
                # Our own earlier renewal was stored though its answer was lost: renew on it.
                sent = self._clock()
                revision = await self._kv.update(slot_key(slot), self._record(), last=revision_now)
        except Exception as exc:  # NATS away: the watchdog lets go at the deadline
            if slot not in self._renew_failing:
                self._renew_failing.add(slot)
                error = str(exc) or type(exc).__name__
                log.warning("ingest_lease_renew_failed", slot=slot, error=error)
            return
        self._renew_failing.discard(slot)
        if slot in self.held:
            self.held[slot] = Held(revision=revision, deadline=hold_deadline(sent, self._ttl_s))

    async def _claim(self, slot: int) -> None:
        sent = self._clock()
        try:
            revision = await self._kv.create(slot_key(slot), self._record())
        except KeyWrongLastSequenceError:
            return  # another instance claimed it first: fine, the compare-and-set decided
        self.held[slot] = Held(revision=revision, deadline=hold_deadline(sent, self._ttl_s))
        metrics.SLOTS_CLAIMED.inc()
        log.info("ingest_slot_claimed", slot=slot, member=self.member)
        try:
            await self._handler.acquired(slot)
        except Exception:
            # A slot we cannot serve is no use held: let another instance try.
            log.exception("ingest_slot_start_failed", slot=slot)
            await self._release(slot, why="start failed")

    async def _release(self, slot: int, *, why: str) -> None:
        """Let go on purpose: disconnect first, then delete the lease (others may claim)."""
        held = self.held.pop(slot, None)
        if held is None:
            return
        await self._handler.lost(slot)
        metrics.SLOTS_RELEASED.inc()
        log.info("ingest_slot_released", slot=slot, why=why, member=self.member)
        try:
            await self._kv.delete(slot_key(slot), last=held.revision)
        except Exception as exc:  # renewed by nobody, it expires within the TTL anyway
            log.warning("ingest_lease_delete_failed", slot=slot, error=str(exc))

    async def _drop(self, slot: int, *, why: str) -> None:
        """The lease is gone or going: disconnect at once, never touch the key again."""
        if self.held.pop(slot, None) is None:
            return
        metrics.LEASES_LOST.inc()
        log.error(
            "ingest_lease_lost",
            slot=slot,
            why=why,
            member=self.member,
            consequence="its MQTT session is disconnected; another instance adopts it",
        )
        await self._handler.lost(slot)
        metrics.SLOTS_HELD.set(len(self.held))

    # --- running --------------------------------------------------------------------------

    async def _watchdog(self) -> None:
        """Drops a slot at its deadline, whatever a renewal in progress is doing."""
        while not self._closing:
            now = self._clock()
            expired = [s for s, h in self.held.items() if h.deadline <= now]
            for slot in expired:
                # Not under the round's lock: a hung renewal must not keep a session alive.
                await self._drop(slot, why="not renewed in time")
            deadlines = [h.deadline for h in self.held.values()]
            wait_s = min([*deadlines, now + renew_interval_s(self._ttl_s)]) - now
            self._changed.clear()
            if self._closing:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(0.01, wait_s))

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds every renewal interval until ``stop``; holdings stay (``release_all`` after)."""
        self._closing = False
        watchdog = asyncio.create_task(self._watchdog())
        attempt_failed = False
        try:
            while not stop.is_set():
                started = self._clock()
                try:
                    await self.round()
                    if attempt_failed:
                        log.warning("ingest_leases_recovered", member=self.member)
                    attempt_failed = False
                except Exception as exc:  # NATS away: held leases run to their deadline
                    if not attempt_failed:
                        log.error(
                            "ingest_lease_round_failed",
                            error=str(exc) or type(exc).__name__,
                            held=self.slots_held,
                        )
                    attempt_failed = True
                self._changed.set()  # deadlines moved: the watchdog re-reads them
                wait_s = renew_interval_s(self._ttl_s) - (self._clock() - started)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.0, wait_s))
        finally:
            # Woken and told to end, not cancelled: asyncio.wait_for (3.11) swallows a
            # cancellation that meets the event it waits for, and the watchdog would go on.
            self._closing = True
            self._changed.set()
            await watchdog

    async def release_all(self) -> None:
        """A clean stop: every slot disconnected and released at once (no TTL to wait out)."""
        async with self._lock:
            for slot in sorted(self.held, reverse=True):
                await self._release(slot, why="shutdown")
            with contextlib.suppress(Exception):
                await self._kv.delete(member_key(self.member))
            metrics.SLOTS_HELD.set(0)
