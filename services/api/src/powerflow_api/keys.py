"""API keys: ``pf_<prefix>_<secret>``, shown once, stored as sha256 with an indexed prefix.

A sha256 of a 256-bit random secret needs no slow password hash: it cannot be brute-forced,
and every request can afford to check it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, cast, get_args

from sqlalchemy import Engine, select, update

from powerflow_common.db.models import API_KEYS, ApiKey

Role = Literal["device", "viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)

# viewer < operator < admin; ``device`` may only ingest and reads nothing.
_RANK: dict[str, int] = {"device": 0, "viewer": 1, "operator": 2, "admin": 3}

_keys = API_KEYS

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


def create_key(engine: Engine, name: str, role: str) -> tuple[str, ApiKey]:
    """Store a new key and return (the key, its row); the key is never retrievable again."""
    checked = check_role(role)
    if not name.strip():
        raise ValueError("a key needs a non-empty name, e.g. --name dashboard")
    key, prefix = new_key()
    row = ApiKey(
        name=name.strip(),
        prefix=prefix,
        key_sha256=sha256_hex(key),
        role=checked,
        created_at=datetime.now(UTC),
        revoked_at=None,
    )
    with engine.begin() as conn:
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
    return key, row


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
    with engine.begin() as conn:
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
