"""Alerts and alert rules for the API: queries that raise domain errors (the controller maps them).

Rules are checked by the one rule module (powerflow_common.alert_rules.parse_params), which the
worker uses too, so a rule the API stores is a rule the worker can judge.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Any, Literal

from msgspec import structs
from sqlalchemy import Connection, delete, func, select, update

from powerflow_api import schemas
from powerflow_common.alert_rules import InvalidRule, parse_params
from powerflow_common.db.models import ALERT_RULES, ALERTS, DEVICES, SITES
from powerflow_common.errors import InvalidInput, NotFound

AlertState = Literal["open", "cleared", "all"]


class RuleNotFound(NotFound, LookupError):
    pass


class AlertNotFound(NotFound, LookupError):
    pass


class TooManyRules(InvalidInput):
    pass


def to_rule(r: Any) -> schemas.AlertRule:
    return schemas.AlertRule(
        id=r.id,
        name=r.name,
        kind=r.kind,
        scope=r.scope,
        device_id=r.device_id,
        site_id=r.site_id,
        params=dict(r.params or {}),
        enabled=bool(r.enabled),
        created_at=r.created_at,
        updated_at=r.updated_at,
        created_by=r.created_by,
    )


def to_alert(r: Any) -> schemas.Alert:
    return schemas.Alert(
        id=r.id,
        rule_id=r.rule_id,
        rule_name=r.name,
        kind=r.kind,
        subject=r.subject,
        open=r.open_subject is not None,
        raised_at=r.raised_at,
        evidence=dict(r.evidence or {}),
        cleared_at=r.cleared_at,
        clear_evidence=None if r.clear_evidence is None else dict(r.clear_evidence),
        acknowledged_at=r.acknowledged_at,
        acknowledged_by=r.acknowledged_by,
        muted_until=r.muted_until,
    )


def _normalised_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters as stored: checked, with their defaults filled in."""
    return structs.asdict(parse_params(kind, params))


def _check_name(name: str) -> str:
    """``name``, or InvalidRule if it has a control character.

    The name goes into the Subject of the alert's e-mail, where a newline is refused by the
    mail library (and would otherwise start a header of its own).
    """
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise InvalidRule(
            "invalid_name", "name: no control characters (newline, tab ...) in a rule name"
        )
    return name


def _check_subject(
    conn: Connection, scope: str, device_id: int | None, site_id: int | None
) -> None:
    if scope == "device":
        if device_id is None or site_id is not None:
            raise InvalidRule("invalid_scope", "scope device needs device_id (and no site_id)")
        found = conn.execute(select(DEVICES.c.id).where(DEVICES.c.id == device_id)).first()
        if found is None:
            raise InvalidRule("unknown_device", f"No device with id {device_id}.")
    else:
        if site_id is None or device_id is not None:
            raise InvalidRule("invalid_scope", "scope site needs site_id (and no device_id)")
        found = conn.execute(select(SITES.c.id).where(SITES.c.id == site_id)).first()
        if found is None:
            raise InvalidRule("unknown_site", f"No site with id {site_id}.")


def list_rules(conn: Connection, limit: int, offset: int) -> tuple[list[schemas.AlertRule], int]:
    total = int(conn.execute(select(func.count()).select_from(ALERT_RULES)).scalar_one())
    rows = conn.execute(
        select(ALERT_RULES).order_by(ALERT_RULES.c.id).limit(limit).offset(offset)
    ).all()
    return [to_rule(r) for r in rows], total


def get_rule(conn: Connection, rule_id: int) -> schemas.AlertRule:
    row = conn.execute(select(ALERT_RULES).where(ALERT_RULES.c.id == rule_id)).first()
    if row is None:
        raise RuleNotFound(f"No alert rule with id {rule_id}.")
    return to_rule(row)


def create_rule(
    conn: Connection, data: schemas.AlertRuleCreate, by: str, now: datetime, max_rules: int
) -> schemas.AlertRule:
    params = _normalised_params(data.kind, data.params)
    _check_name(data.name)
    _check_subject(conn, data.scope, data.device_id, data.site_id)
    if conn.execute(select(func.count()).select_from(ALERT_RULES)).scalar_one() >= max_rules:
        raise TooManyRules(
            f"There are {max_rules} alert rules already (setting alerts_rules_max); "
            "delete or reuse one."
        )
    key = conn.execute(
        ALERT_RULES.insert().values(
            name=data.name,
            kind=data.kind,
            scope=data.scope,
            device_id=data.device_id,
            site_id=data.site_id,
            params=params,
            enabled=data.enabled,
            created_at=now,
            updated_at=now,
            created_by=by,
        )
    ).inserted_primary_key
    assert key is not None
    return get_rule(conn, int(key[0]))


def update_rule(
    conn: Connection, rule_id: int, data: schemas.AlertRuleUpdate, now: datetime
) -> schemas.AlertRule:
    current = get_rule(conn, rule_id)
    values: dict[str, Any] = {"updated_at": now}
    if data.name is not None:
        values["name"] = _check_name(data.name)
    if data.enabled is not None:
        values["enabled"] = data.enabled
    if data.params is not None:
        values["params"] = _normalised_params(current.kind, data.params)
    conn.execute(update(ALERT_RULES).where(ALERT_RULES.c.id == rule_id).values(**values))
    return get_rule(conn, rule_id)


def delete_rule(conn: Connection, rule_id: int) -> None:
    get_rule(conn, rule_id)
    conn.execute(delete(ALERTS).where(ALERTS.c.rule_id == rule_id))  # SQLite: no FK cascade
    conn.execute(delete(ALERT_RULES).where(ALERT_RULES.c.id == rule_id))


def _alerts_query() -> Any:
    return select(ALERTS, ALERT_RULES.c.name).join(
        ALERT_RULES, ALERT_RULES.c.id == ALERTS.c.rule_id
    )


def _state_filter(state: AlertState) -> list[Any]:
    if state == "open":
        return [ALERTS.c.open_subject.is_not(None)]
    if state == "cleared":
        return [ALERTS.c.open_subject.is_(None)]
    return []


def list_alerts(
    conn: Connection, state: AlertState, limit: int, offset: int
) -> tuple[list[schemas.Alert], int]:
    """Newest first."""
    where = _state_filter(state)
    total = int(conn.execute(select(func.count()).select_from(ALERTS).where(*where)).scalar_one())
    rows = conn.execute(
        _alerts_query().where(*where).order_by(ALERTS.c.id.desc()).limit(limit).offset(offset)
    ).all()
    return [to_alert(r) for r in rows], total


def get_alert(conn: Connection, alert_id: int) -> schemas.Alert:
    row = conn.execute(_alerts_query().where(ALERTS.c.id == alert_id)).first()
    if row is None:
        raise AlertNotFound(f"No alert with id {alert_id}.")
    return to_alert(row)


def acknowledge(conn: Connection, alert_id: int, by: str, now: datetime) -> schemas.Alert:
    """Acknowledge once: a second acknowledgement keeps the first one's time and name."""
    get_alert(conn, alert_id)
    conn.execute(
        update(ALERTS)
        .where(ALERTS.c.id == alert_id, ALERTS.c.acknowledged_at.is_(None))
        .values(acknowledged_at=now, acknowledged_by=by)
    )
    return get_alert(conn, alert_id)


def mute(conn: Connection, alert_id: int, until: datetime | None) -> schemas.Alert:
    """Mute an alert's notifications (and its rule's on this subject) until ``until``.

    None unmutes.
    """
    get_alert(conn, alert_id)
    conn.execute(update(ALERTS).where(ALERTS.c.id == alert_id).values(muted_until=until))
    return get_alert(conn, alert_id)
