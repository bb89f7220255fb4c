"""Alert state in the database: rules read, alerts raised and cleared once, the outbox.

Raised once. ``alerts`` has a unique key on (rule_id, open_subject), where ``open_subject``
is the subject while the alert is open and NULL after it cleared (NULLs never collide, on
SQLite and MariaDB alike). Raising is a plain INSERT: of two worker copies that both see a
condition, or a restarted worker that sees it again, one insert wins and the others get an
integrity error, which means "already open". Clearing is a conditional UPDATE (``WHERE
open_subject = :subject``): only the copy whose update changed the row writes the cleared
event. The outbox rows of a raise or clear are written in the same transaction, so an alert
never exists without its notification, and a restart never loses one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from powerflow_common.alert_rules import InvalidRule, RuleParams, parse_params
from powerflow_common.db.dialect import begin_write
from powerflow_common.db.models import ALERT_EVENTS, ALERT_RULES, ALERTS
from powerflow_common.logs import get_logger

__all__ = [
    "CHANNELS",
    "OutboxEvent",
    "RuleRow",
    "claim_due_events",
    "clear_alert",
    "event_id",
    "load_rules",
    "mark_delivered",
    "mark_failed",
    "open_alerts",
    "outbox_backlog",
    "raise_alert",
    "subject_of",
]

log = get_logger(__name__)

CHANNELS = ("webhook", "email")
EVENT_SCHEMA = "powerflow.alert.v1"


@dataclass(frozen=True, slots=True)
class RuleRow:
    id: int
    name: str
    kind: str
    scope: str  # "device" or "site"
    device_id: int | None
    site_id: int | None
    params: RuleParams


def subject_of(scope: str, ident: int) -> str:
    """An alert's subject: ``device:<id>`` or ``site:<id>``."""
    return f"{scope}:{ident}"


def event_id(alert_id: int, transition: str) -> str:
    """The id a receiver deduplicates on: one per alert and transition, the same on retries."""
    return f"alert-{alert_id}-{transition}"


def load_rules(conn: Connection) -> tuple[list[RuleRow], list[int]]:
    """The enabled rules, and the ids of enabled rules whose parameters no longer parse."""
    rules: list[RuleRow] = []
    invalid: list[int] = []
    for r in conn.execute(select(ALERT_RULES).where(ALERT_RULES.c.enabled.is_(True))):
        try:
            params = parse_params(r.kind, r.params or {})
        except InvalidRule as exc:
            log.error("alert_rule_invalid", rule_id=r.id, reason=exc.reason, detail=exc.detail)
            invalid.append(r.id)
            continue
        rules.append(RuleRow(r.id, r.name, r.kind, r.scope, r.device_id, r.site_id, params))
    return rules, invalid


def open_alerts(conn: Connection) -> set[tuple[int, str]]:
    """(rule id, subject) of every open alert."""
    rows = conn.execute(
        select(ALERTS.c.rule_id, ALERTS.c.open_subject).where(ALERTS.c.open_subject.is_not(None))
    )
    return {(r.rule_id, str(r.open_subject)) for r in rows}


def _payload(
    transition: str, alert_id: int, rule: RuleRow, subject: str, at: datetime, evidence: Any
) -> dict[str, Any]:
    return {
        "schema": EVENT_SCHEMA,
        "type": f"alert.{transition}",
        "event_id": event_id(alert_id, transition),
        "at": at.isoformat(),
        "alert": {
            "id": alert_id,
            "rule_id": rule.id,
            "rule_name": rule.name,
            "kind": rule.kind,
            "subject": subject,
            "evidence": evidence,
        },
    }


def _write_events(
    conn: Connection,
    transition: str,
    alert_id: int,
    payload: dict[str, Any],
    channels: Sequence[str],
    now: datetime,
) -> None:
    for channel in channels:
        conn.execute(
            insert(ALERT_EVENTS).values(
                event_id=event_id(alert_id, transition),
                channel=channel,
                alert_id=alert_id,
                transition=transition,
                payload=payload,
                created_at=now,
                attempts=0,
                next_attempt_at=now,
            )
        )


def raise_alert(
    engine: Engine,
    rule: RuleRow,
    subject: str,
    evidence: dict[str, Any],
    now: datetime,
    channels: Sequence[str],
) -> int | None:
    """Open an alert with its evidence and its events; None when it was open already.

    An alert of a (rule, subject) whose previous alert is muted past ``now`` inherits the
    mute and sends nothing (a condition that flaps while muted stays quiet).
    """
    try:
        # Reads, then writes: begun as a write (on SQLite a deferred transaction fails with
        # SQLITE_BUSY when the writer commits in between).
        with begin_write(engine) as conn:
            muted_until = conn.execute(
                select(func.max(ALERTS.c.muted_until)).where(
                    ALERTS.c.rule_id == rule.id, ALERTS.c.subject == subject
                )
            ).scalar_one_or_none()
            muted = muted_until is not None and muted_until.replace(tzinfo=now.tzinfo) > now
            inserted = conn.execute(
                insert(ALERTS).values(
                    rule_id=rule.id,
                    kind=rule.kind,
                    subject=subject,
                    open_subject=subject,
                    raised_at=now,
                    evidence=evidence,
                    muted_until=muted_until if muted else None,
                )
            ).inserted_primary_key
            assert inserted is not None
            alert_id = int(inserted[0])
            if not muted:
                payload = _payload("raised", alert_id, rule, subject, now, evidence)
                _write_events(conn, "raised", alert_id, payload, channels, now)
    except IntegrityError:
        return None  # open already: another copy (or this one before a restart) raised it
    return int(alert_id)


def clear_alert(
    engine: Engine,
    rule: RuleRow,
    subject: str,
    evidence: dict[str, Any],
    now: datetime,
    channels: Sequence[str],
) -> int | None:
    """Clear the open alert of (rule, subject) and write its events; None if none was open."""
    with begin_write(engine) as conn:
        row = conn.execute(
            select(ALERTS.c.id, ALERTS.c.muted_until).where(
                ALERTS.c.rule_id == rule.id, ALERTS.c.open_subject == subject
            )
        ).first()
        if row is None:
            return None
        changed = conn.execute(
            update(ALERTS)
            .where(ALERTS.c.id == row.id, ALERTS.c.open_subject.is_not(None))
            .values(open_subject=None, cleared_at=now, clear_evidence=evidence)
        ).rowcount
        if changed != 1:
            return None  # another copy cleared it first
        if row.muted_until is None or row.muted_until <= now:
            payload = _payload("cleared", row.id, rule, subject, now, evidence)
            _write_events(conn, "cleared", row.id, payload, channels, now)
    return int(row.id)


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    id: int
    event_id: str
    channel: str
    transition: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime


def claim_due_events(
    engine: Engine, now: datetime, *, limit: int, claim: timedelta
) -> list[OutboxEvent]:
    """Undelivered events due by ``now``, each claimed for ``claim`` by a conditional update.

    Two senders may select the same row; only the one whose update still finds it due sends
    it. A sender that dies holding a claim lets it lapse: the event is due again after it.
    """
    with engine.connect() as conn:
        rows = conn.execute(
            select(ALERT_EVENTS)
            .where(ALERT_EVENTS.c.delivered_at.is_(None), ALERT_EVENTS.c.next_attempt_at <= now)
            .order_by(ALERT_EVENTS.c.next_attempt_at, ALERT_EVENTS.c.id)
            .limit(limit)
        ).all()
    claimed: list[OutboxEvent] = []
    for r in rows:
        with engine.begin() as conn:
            won = conn.execute(
                update(ALERT_EVENTS)
                .where(
                    ALERT_EVENTS.c.id == r.id,
                    ALERT_EVENTS.c.delivered_at.is_(None),
                    ALERT_EVENTS.c.next_attempt_at <= now,
                )
                .values(next_attempt_at=now + claim)
            ).rowcount
        if won == 1:
            claimed.append(
                OutboxEvent(
                    r.id, r.event_id, r.channel, r.transition, r.payload, r.attempts, r.created_at
                )
            )
    return claimed


def mark_delivered(engine: Engine, row_id: int, now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(ALERT_EVENTS)
            .where(ALERT_EVENTS.c.id == row_id)
            .values(delivered_at=now, attempts=ALERT_EVENTS.c.attempts + 1, last_error=None)
        )


def mark_failed(engine: Engine, row_id: int, retry_at: datetime, error: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(ALERT_EVENTS)
            .where(ALERT_EVENTS.c.id == row_id, ALERT_EVENTS.c.delivered_at.is_(None))
            .values(
                next_attempt_at=retry_at,
                attempts=ALERT_EVENTS.c.attempts + 1,
                last_error=error[:500],
            )
        )


def outbox_backlog(conn: Connection) -> int:
    """Events not delivered yet (every channel)."""
    return int(
        conn.execute(
            select(func.count())
            .select_from(ALERT_EVENTS)
            .where(ALERT_EVENTS.c.delivered_at.is_(None))
        ).scalar_one()
    )
