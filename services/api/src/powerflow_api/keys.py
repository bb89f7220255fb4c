"""API keys: ``pf_<prefix>_<secret>``, shown once, stored as sha256 with an indexed prefix.

A sha256 of a 256-bit random secret needs no slow password hash: it cannot be brute-forced,
and every request can afford to check it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, cast, get_args

from sqlalchemy import Engine, insert, select, update

from powerflow_common.db.dialect import begin_write
from powerflow_common.db.models import API_KEY_DEVICES, API_KEYS, ApiKey
from powerflow_common.errors import Rejected
from powerflow_common.validation import check_device_code

Role = Literal["device", "viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)

# viewer < operator < admin; ``device`` may only ingest and reads nothing.
_RANK: dict[str, int] = {"device": 0, "viewer": 1, "operator": 2, "admin": 3}

_keys = API_KEYS
_bindings = API_KEY_DEVICES

# A gateway posting for a building's meters needs hundreds; more is a mistake (and every
# ingest item is checked against the set).
MAX_DEVICES_PER_KEY = 10_000

KEY_PATTERN = re.compile(r"^pf_([a-z0-9]{8})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id, name and role (never the key itself)."""

    key_id: int
    name: str
    role: Role

    def at_least(self, role: Role) -> bool:
        """True when this key's role is ``role`` or above it (device keys rank below viewer)."""
        return _RANK[self.role] >= _RANK[role]


def check_role(role: str) -> Role:
    """``role`` if it is a known role, else ValueError naming the choices."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    return role  # narrowed by the membership test above


def sha256_hex(value: str) -> str:
    """Hex sha256 of a string (keys and tickets are stored and compared this way)."""
    return hashlib.sha256(value.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh (key, prefix); the prefix finds the row, the hash proves the key."""
    prefix = secrets.token_hex(4)
    return f"pf_{prefix}_{secrets.token_urlsafe(32)}", prefix


def check_devices(role: Role, devices: Iterable[str]) -> list[str]:
    """The canonical, distinct codes a key of ``role`` is bound to; ValueError if not allowed.

    A ``device`` key needs at least one device (a key for every device is what an operator
    key is); other roles post for any device and take none.
    """
    codes: list[str] = []
    for code in devices:
        try:
            codes.append(check_device_code(code.strip()))
        except Rejected as exc:
            raise ValueError(exc.detail) from None
    codes = list(dict.fromkeys(codes))
    if role == "device" and not codes:
        raise ValueError("a device key needs the devices it posts for: --device CODE (repeatable)")
    if role != "device" and codes:
        raise ValueError(
            f"only device keys are bound to devices; a {role} key may post for any device"
        )
    if len(codes) > MAX_DEVICES_PER_KEY:
        raise ValueError(f"{len(codes)} devices; a key is bound to at most {MAX_DEVICES_PER_KEY}")
    return codes


def create_key(
    engine: Engine, name: str, role: str, devices: Iterable[str] = ()
) -> tuple[str, ApiKey]:
    """Store a new key and return (the key, its row); the key is never retrievable again.

    ``devices``: the codes a ``device`` key may post readings for (required for that role).
    """
    checked = check_role(role)
    if not name.strip():
        raise ValueError("a key needs a non-empty name, e.g. --name dashboard")
    codes = check_devices(checked, devices)
    key, prefix = new_key()
    row = ApiKey(
        name=name.strip(),
        prefix=prefix,
        key_sha256=sha256_hex(key),
        role=checked,
        created_at=datetime.now(UTC),
        revoked_at=None,
    )
    with begin_write(engine) as conn:
        result = conn.execute(
            _keys.insert().values(
                name=row.name,
                prefix=row.prefix,
                key_sha256=row.key_sha256,
                role=row.role,
                created_at=row.created_at,
            )
        )
        row.id = int(result.inserted_primary_key[0])  # type: ignore[index]
        if codes:
            conn.execute(insert(_bindings), [{"key_id": row.id, "device_code": c} for c in codes])
    return key, row


def key_devices(engine: Engine, key_id: int) -> frozenset[str]:
    """The device codes a key is bound to (empty for other roles and for old device keys)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(_bindings.c.device_code).where(_bindings.c.key_id == key_id)
        ).all()
    return frozenset(str(r.device_code) for r in rows)


def all_key_devices(engine: Engine) -> dict[int, list[str]]:
    """Every key's bound device codes, sorted, by key id (for ``keys list``)."""
    found: dict[int, list[str]] = {}
    with engine.connect() as conn:
        rows = conn.execute(
            select(_bindings.c.key_id, _bindings.c.device_code).order_by(
                _bindings.c.key_id, _bindings.c.device_code
            )
        ).all()
    for row in rows:
        found.setdefault(int(row.key_id), []).append(str(row.device_code))
    return found


def active_key_ids(engine: Engine, key_ids: Iterable[int]) -> set[int]:
    """Which of these keys exist and are not revoked (one query, for the live sockets)."""
    wanted = sorted(set(key_ids))
    if not wanted:
        return set()
    with engine.connect() as conn:
        rows = conn.execute(
            select(_keys.c.id).where(_keys.c.id.in_(wanted), _keys.c.revoked_at.is_(None))
        ).all()
    return {int(r.id) for r in rows}


def list_keys(engine: Engine) -> list[ApiKey]:
    """Every key, newest first (hashes included; show only prefixes to people)."""
    with engine.connect() as conn:
        rows = conn.execute(select(_keys).order_by(_keys.c.id.desc())).all()
    return [ApiKey(**row._mapping) for row in rows]


def revoke_key(engine: Engine, ident: str) -> int:
    """Revoke keys by id, prefix or name; returns how many were revoked now."""
    table = _keys
    if ident.isdigit():
        where = table.c.id == int(ident)
    else:
        match = KEY_PATTERN.fullmatch(ident)
        prefix = match.group(1) if match else ident
        where = (table.c.prefix == prefix) | (table.c.name == ident)
    with begin_write(engine) as conn:
        result = conn.execute(
            update(table)
            .where(where, table.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
    return int(result.rowcount)


def authenticate_key(engine: Engine, key: str) -> Principal | None:
    """The principal of an unrevoked key, or None; looks up by prefix, compares hashes."""
    match = KEY_PATTERN.fullmatch(key)
    if match is None:
        return None
    digest = sha256_hex(key)
    table = _keys
    with engine.connect() as conn:
        rows = conn.execute(
            select(table.c.id, table.c.name, table.c.role, table.c.key_sha256).where(
                table.c.prefix == match.group(1), table.c.revoked_at.is_(None)
            )
        ).all()
    for row in rows:
        if hmac.compare_digest(row.key_sha256, digest) and row.role in _RANK:
            return Principal(key_id=int(row.id), name=str(row.name), role=cast(Role, row.role))
    return None
