"""Many ingest bridges without hand-splitting: K fixed MQTT client ids ("slots") and leases.

ingest's MQTT side is K slots, each a fixed client id (``powerflow-ingest-<i>``, the broker
account of the same name), a persistent session and its own share of the topic filters.
Running ingest instances hold leases on slots in a JetStream key-value bucket whose entries
expire after the lease TTL; an instance renews its leases, and when it dies a survivor
claims its expired slots and connects with the same client ids (``clean_start=False``),
draining what the broker queued for them. Not MQTT shared subscriptions: Mosquitto keeps
giving a disconnected member's persistent session its share, in a queue only that session
drains.

This module is the pure part: which filters a slot subscribes to, how many slots an
instance should hold, what to claim and release, what a lease record says and when a
holder must let go. The key-value edge is ``powerflow_ingest.leases``.

How topics are divided. MQTT has no hash subscription: a broker delivers a message to every
session with a matching filter. So the unit of division is the topic filter: the configured
filters (``POWERFLOW_MQTT_TOPICS``, else the enabled formats' patterns), sorted and dealt
round-robin to the slots. Every filter belongs to exactly one slot (the legacy
``power/measurement`` is one filter, so one slot), and the deal depends only on the filters
and K, so every instance computes the same one. A filter's whole traffic goes through one
slot: to spread one busy pattern (``power/+/measurement``), list narrower filters (exact
device topics, or ``power/<site>/+``-style levels the devices already publish on). Overlapping
filters in different slots deliver a message to both sessions: stored once (the writer's
idempotent insert), published twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import msgspec

from powerflow_common.names import Names

# Keys of the lease bucket. KV keys allow [-/_=.A-Za-z0-9]; one key per slot and one per
# live instance (its heartbeat, renewed with its leases, so members expire with them).
SLOT_KEY_PREFIX = "slot."
MEMBER_KEY_PREFIX = "member."

# An instance renews every quarter of the TTL: three renewals may fail (a NATS hiccup)
# before the lease is in danger.
RENEWALS_PER_TTL = 4
# A holder lets go of a lease this share of the TTL before it could expire on the server
# (its deadline runs from when it *sent* the renewal, before the server stored it): the
# time its MQTT disconnect may take, so it is gone before anyone can claim the slot.
RELEASE_MARGIN_SHARE = 0.2


def slot_client_id(names: Names, slot: int) -> str:
    """The MQTT client id (and broker account) of one slot: slot 0 is today's single id."""
    return names.mqtt_client_id(str(slot))


def slot_client_ids(names: Names, slots: int) -> tuple[str, ...]:
    """Every slot's client id: the K ingest accounts the broker must have."""
    return tuple(slot_client_id(names, s) for s in range(slots))


def assign_topics(filters: Iterable[str], slots: int) -> tuple[tuple[str, ...], ...]:
    """Each slot's topic filters: the distinct filters, sorted, dealt round-robin.

    Deterministic (every instance computes the same deal) and balanced by count; a slot
    beyond the number of filters gets none and connects for nothing.
    """
    if slots < 1:
        raise ValueError("at least one slot")
    ordered = sorted(set(filters))
    return tuple(tuple(ordered[s::slots]) for s in range(slots))


def quota(members: Iterable[str], me: str, slots: int) -> int:
    """How many slots ``me`` should hold among the live ``members`` (``me`` included).

    Members sorted by id; each gets floor(K/n), and the first K mod n one more: the quotas
    add up to K, no instance holds more than ceil(K/n). Every instance computes its own
    quota from the member list it read; a transiently different list only delays balance
    (claims are compare-and-set, so it never makes two holders).
    """
    ranked = sorted(set(members) | {me})
    base, extra = divmod(slots, len(ranked))
    return base + (1 if ranked.index(me) < extra else 0)


@dataclass(frozen=True, slots=True)
class Plan:
    """What one instance does in one round: slots to release (above quota) and to claim."""

    release: tuple[int, ...]
    claim: tuple[int, ...]


def plan(
    me: str,
    members: Iterable[str],
    holders: Mapping[int, str | None],
    slots: int,
) -> Plan:
    """Release what is above quota (highest slots first), claim free slots up to it.

    ``holders`` maps every slot to its lease holder as read from the bucket (None: free).
    Claims start at an offset derived from ``me`` so that instances starting together do
    not all race for slot 0.
    """
    target = quota(members, me, slots)
    mine = sorted(s for s in range(slots) if holders.get(s) == me)
    if len(mine) > target:
        return Plan(release=tuple(reversed(mine[target:])), claim=())
    free = [s for s in range(slots) if holders.get(s) is None]
    if not free or len(mine) >= target:
        return Plan(release=(), claim=())
    start = _offset(me, slots)
    free.sort(key=lambda s: (s - start) % slots)
    return Plan(release=(), claim=tuple(free[: target - len(mine)]))


def _offset(me: str, slots: int) -> int:
    # A stable small hash (not Python's salted hash()): the same instance, the same start.
    return sum(me.encode()) % slots


def renew_interval_s(ttl_s: float) -> float:
    """How often a holder renews its leases."""
    return ttl_s / RENEWALS_PER_TTL


def hold_deadline(renew_sent_at: float, ttl_s: float) -> float:
    """When (on the holder's monotonic clock) a lease renewed at ``renew_sent_at`` must be
    let go unless renewed again: before the server can expire it and another can claim it."""
    return renew_sent_at + ttl_s * (1 - RELEASE_MARGIN_SHARE)


def adoption_bound_s(ttl_s: float) -> float:
    """The longest a dead instance's slot waits for a survivor's claim: its lease's TTL plus
    one renewal round of the survivor (then the MQTT connect and the broker's resend)."""
    return ttl_s + renew_interval_s(ttl_s)


class LeaseRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """A slot's lease or a member's heartbeat, as stored in the bucket."""

    owner: str
    renewed_at: str  # ISO 8601 UTC, for people reading the bucket; expiry is the server's


def encode_record(record: LeaseRecord) -> bytes:
    return msgspec.json.encode(record)


def decode_record(raw: bytes) -> LeaseRecord | None:
    """The record, or None when the value is not one (never raises: a stray value is free)."""
    try:
        return msgspec.json.decode(raw, type=LeaseRecord)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def slot_key(slot: int) -> str:
    return f"{SLOT_KEY_PREFIX}{slot}"


def member_key(member: str) -> str:
    return f"{MEMBER_KEY_PREFIX}{member}"


def slot_of_key(key: str) -> int | None:
    """The slot a key names, or None."""
    if not key.startswith(SLOT_KEY_PREFIX):
        return None
    number = key.removeprefix(SLOT_KEY_PREFIX)
    return int(number) if number.isdigit() else None


def balanced(counts: Sequence[int], slots: int) -> bool:
    """Whether holdings are as even as the rule makes them (tests, /metrics readers)."""
    if not counts:
        return False
    return sum(counts) == slots and max(counts) <= math.ceil(slots / len(counts))
