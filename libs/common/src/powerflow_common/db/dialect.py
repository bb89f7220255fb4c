"""The one place where SQLite and MySQL/MariaDB differ, for the SQL the services write.

Each backend is a ``SqlDialect`` in a registry keyed by SQLAlchemy's dialect name; code asks
``dialect_of(engine or connection)`` and never tests the name itself. An unknown backend is
refused loudly rather than given MySQL's SQL.

- ``upsert``: ``INSERT .. ON DUPLICATE KEY UPDATE`` (MySQL) or ``INSERT .. ON CONFLICT (key)
  DO UPDATE`` (SQLite), with ``incoming`` the row that was refused by the key (MySQL's
  ``inserted``/``VALUES()``, SQLite's ``excluded``).
- ``greatest``/``least``: MySQL's GREATEST/LEAST; SQLite's scalar ``max``/``min``.
- ``hour_text``: the UTC hour of a stored timestamp as ``YYYY-MM-DD HH:00:00``.
- ``exclusive``: a section only one connection runs at a time for a name (a bucket):
  MySQL's ``GET_LOCK``; on SQLite a write transaction begun immediately, which waits up to
  the timeout for the one writer SQLite allows (a DEFERRED transaction that reads and then
  writes fails at once with SQLITE_BUSY in WAL mode when another writer committed between).
- ``named_lock``: a lock that spans several transactions and other work (a broker round
  trip): MySQL's ``GET_LOCK`` again; on SQLite an exclusive ``flock`` on a file beside the
  database (SQLite's processes share one machine), released by the kernel if the process dies.
- ``begin_write``: a transaction that will write: IMMEDIATE on SQLite, plain elsewhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Column, Connection, Engine, Table, func, text
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.dml import Insert

from powerflow_common.db.engine import (
    SQLITE_BEGIN_IMMEDIATE,
    SQLITE_BEGIN_OPTION,
    SQLITE_BUSY_TIMEOUT_S,
    sqlite_path,
)
from powerflow_common.errors import Retryable, Unavailable

LOCK_NAME_MAX = 64  # MySQL's limit on GET_LOCK names
HOUR_TEXT_FORMAT = "%Y-%m-%d %H:00:00"  # what hour_text returns (strptime with %M:%S)
# How often a SQLite named lock is tried again while another process holds it.
_FILE_LOCK_RETRY_S = 0.02
_SQLITE_BUSY = 5  # SQLITE_BUSY, sqlite3's primary result code for "database is locked"


class LockNotAcquired(Retryable):
    """Another connection held the lock (or SQLite's write lock) past the timeout."""


class UnsupportedDatabase(Unavailable, RuntimeError):
    """A backend powerflow has no SQL for."""


@dataclass(frozen=True, slots=True)
class Upsert:
    """An INSERT that updates the existing row when a unique key matches.

    Build the ``set_`` values with ``incoming`` (the row that met the key), then call
    ``on_conflict(set_)`` for the statement to execute.
    """

    statement: Insert
    key: tuple[str, ...]
    backend: str

    @property
    def incoming(self) -> Any:
        """The proposed row's columns (``inserted`` on MySQL, ``excluded`` on SQLite)."""
        if self.backend == "sqlite":
            return self.statement.excluded  # type: ignore[attr-defined]
        return self.statement.inserted  # type: ignore[attr-defined]

    def on_conflict(self, set_: Mapping[str, Any]) -> Insert:
        """The statement: insert, or update the row whose ``key`` matches with ``set_``."""
        if self.backend == "sqlite":
            return self.statement.on_conflict_do_update(  # type: ignore[attr-defined,no-any-return]
                index_elements=list(self.key), set_=dict(set_)
            )
        return self.statement.on_duplicate_key_update(dict(set_))  # type: ignore[attr-defined,no-any-return]


class SqlDialect(Protocol):
    """What differs between the backends, for the SQL powerflow writes."""

    name: str

    def upsert(
        self, table: Table, key: Sequence[str], values: Any = None
    ) -> Upsert: ...  # pragma: no cover

    def greatest(self, a: Any, b: Any) -> ColumnElement[Any]: ...  # pragma: no cover

    def least(self, a: Any, b: Any) -> ColumnElement[Any]: ...  # pragma: no cover

    def hour_text(self, column: Column[Any]) -> ColumnElement[str]: ...  # pragma: no cover

    def exclusive(
        self, conn: Connection, name: str, timeout_s: float
    ) -> contextlib.AbstractContextManager[None]: ...  # pragma: no cover

    def named_lock(
        self, engine: Engine, name: str, timeout_s: float
    ) -> contextlib.AbstractContextManager[None]: ...  # pragma: no cover

    def begin_write(
        self, engine: Engine
    ) -> contextlib.AbstractContextManager[Connection]: ...  # pragma: no cover


def lock_name(prefix: str, *parts: object) -> str:
    """``<prefix>:<parts...>`` cut to MySQL's 64 characters: a digest when longer."""
    name = ":".join([prefix, *map(str, parts)])
    if len(name) <= LOCK_NAME_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()
    return f"{prefix}:{digest}"[:LOCK_NAME_MAX]


class MySqlDialect:
    """MySQL and MariaDB: GET_LOCK, ON DUPLICATE KEY UPDATE, DATE_FORMAT."""

    name = "mysql"

    def upsert(self, table: Table, key: Sequence[str], values: Any = None) -> Upsert:
        stmt = mysql.insert(table)
        if values is not None:
            stmt = stmt.values(values)
        # ON DUPLICATE KEY fires on any unique key; ``key`` documents the one meant.
        return Upsert(stmt, tuple(key), self.name)

    def greatest(self, a: Any, b: Any) -> ColumnElement[Any]:
        return func.greatest(a, b)

    def least(self, a: Any, b: Any) -> ColumnElement[Any]:
        return func.least(a, b)

    def hour_text(self, column: Column[Any]) -> ColumnElement[str]:
        return func.date_format(column, HOUR_TEXT_FORMAT)

    @contextlib.contextmanager
    def exclusive(self, conn: Connection, name: str, timeout_s: float) -> Iterator[None]:
        got = conn.execute(
            text("SELECT GET_LOCK(:name, :timeout)"), {"name": name, "timeout": timeout_s}
        ).scalar()
        # End the implicit transaction: the snapshot the section reads must start after the
        # lock is ours, so it sees everything committed by whoever held it.
        conn.commit()
        if got != 1:
            raise LockNotAcquired(f"lock {name} not acquired within {timeout_s} s")
        try:
            with conn.begin():
                yield
        finally:
            with contextlib.suppress(DBAPIError):  # a lost connection releases its locks
                conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
                conn.commit()

    @contextlib.contextmanager
    def named_lock(self, engine: Engine, name: str, timeout_s: float) -> Iterator[None]:
        with engine.connect() as conn:
            got = conn.execute(
                text("SELECT GET_LOCK(:name, :timeout)"), {"name": name, "timeout": timeout_s}
            ).scalar()
            conn.commit()
            if got != 1:
                raise LockNotAcquired(f"lock {name} not acquired within {timeout_s} s")
            try:
                yield
            finally:
                with contextlib.suppress(DBAPIError):
                    conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
                    conn.commit()

    @contextlib.contextmanager
    def begin_write(self, engine: Engine) -> Iterator[Connection]:
        with engine.begin() as conn:
            yield conn


def _is_busy(exc: OperationalError) -> bool:
    orig = exc.orig
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(orig, sqlite3.OperationalError) and code is not None:
        return bool(code & 0xFF == _SQLITE_BUSY)
    return "database is locked" in str(orig)


class SqliteDialect:
    """SQLite: ON CONFLICT DO UPDATE, scalar max/min, strftime, BEGIN IMMEDIATE, flock."""

    name = "sqlite"

    def upsert(self, table: Table, key: Sequence[str], values: Any = None) -> Upsert:
        stmt = sqlite.insert(table)
        if values is not None:
            stmt = stmt.values(values)
        return Upsert(stmt, tuple(key), self.name)

    def greatest(self, a: Any, b: Any) -> ColumnElement[Any]:
        return func.max(a, b)  # two arguments: the scalar max, not the aggregate

    def least(self, a: Any, b: Any) -> ColumnElement[Any]:
        return func.min(a, b)

    def hour_text(self, column: Column[Any]) -> ColumnElement[str]:
        return func.strftime(HOUR_TEXT_FORMAT, column)

    @contextlib.contextmanager
    def exclusive(self, conn: Connection, name: str, timeout_s: float) -> Iterator[None]:
        # SQLite has one writer at a time: the write lock taken by BEGIN IMMEDIATE is the
        # bucket's lock (and every other bucket's). ``name`` is not needed.
        if conn.in_transaction():
            conn.commit()  # the section's snapshot starts once the write lock is ours
        timeout_ms = int(timeout_s * 1000)
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {timeout_ms}")
        conn.commit()
        options = conn.get_execution_options()
        conn.execution_options(**{SQLITE_BEGIN_OPTION: SQLITE_BEGIN_IMMEDIATE})
        try:
            try:
                transaction = conn.begin()
            except OperationalError as exc:
                if _is_busy(exc):
                    raise LockNotAcquired(
                        f"SQLite write lock for {name} not acquired within {timeout_s} s"
                    ) from exc
                raise
            with transaction:
                yield
        finally:
            conn.execution_options(**{SQLITE_BEGIN_OPTION: options.get(SQLITE_BEGIN_OPTION)})
            with contextlib.suppress(DBAPIError):
                conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
                conn.commit()

    @contextlib.contextmanager
    def named_lock(self, engine: Engine, name: str, timeout_s: float) -> Iterator[None]:
        import fcntl  # POSIX only; SQLite's processes share one machine, so its file locks

        folder = _lock_folder(engine)
        folder.mkdir(parents=True, exist_ok=True)
        # One file per name, never deleted (deleting a lock file races with its next taker).
        path = folder / hashlib.sha256(name.encode()).hexdigest()[:32]
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockNotAcquired(
                            f"lock {name} not acquired within {timeout_s} s"
                        ) from None
                    time.sleep(_FILE_LOCK_RETRY_S)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def begin_write(self, engine: Engine) -> Iterator[Connection]:
        with engine.connect() as conn:
            conn.execution_options(**{SQLITE_BEGIN_OPTION: SQLITE_BEGIN_IMMEDIATE})
            with conn.begin():
                yield conn


def _lock_folder(engine: Engine) -> Path:
    path = sqlite_path(engine.url)
    return path.with_name(path.name + ".locks")


_MYSQL = MySqlDialect()
DIALECTS: dict[str, SqlDialect] = {"mysql": _MYSQL, "mariadb": _MYSQL, "sqlite": SqliteDialect()}


def dialect_of(bind: Engine | Connection) -> SqlDialect:
    """The SQL of ``bind``'s backend; an unknown backend is an error, not MySQL."""
    name = bind.dialect.name
    try:
        return DIALECTS[name]
    except KeyError:
        raise UnsupportedDatabase(
            f"powerflow supports SQLite and MySQL/MariaDB, not {name!r}"
        ) from None


def begin_write(engine: Engine) -> contextlib.AbstractContextManager[Connection]:
    """``engine.begin()`` for a transaction that writes (BEGIN IMMEDIATE on SQLite, so that
    reading first and writing next cannot fail with SQLITE_BUSY when another writer wins)."""
    return dialect_of(engine).begin_write(engine)
