"""Time arithmetic in SQL that reads the same on MySQL/MariaDB and SQLite.

The statistics cut local days, weeks and months out of UTC ``hour_start`` values with plain
arithmetic (periods.utc_offset_segments gives the offsets, so no database needs timezone
tables). MySQL spells that ``+ INTERVAL n MINUTE``, ``WEEKDAY()`` and ``DATE_FORMAT()``;
SQLite stores a DATETIME as ISO text ('YYYY-MM-DD HH:MM:SS.ffffff', SQLAlchemy's format)
and spells it ``datetime(ts, 'n minutes')``, ``date(ts, 'weekday 1')`` and ``strftime()``.
Each dialect is one ``SqlTime`` in a registry; an unknown dialect is refused, never guessed.

Two rules keep the text the same on both engines:

- A datetime parameter of raw SQL is bound with the DateTime type (``bind_text``), so SQLite
  compares it with stored text in the stored format. Bound untyped, the driver writes
  '2026-01-01 00:00:00' (no fraction), which sorts *before* the stored
  '2026-01-01 00:00:00.000000': ``>=`` and ``<`` still happen to hold, ``>`` and ``<=`` do not.
- A datetime result column of raw SQL is declared (``bind_text(..., first_hour=DateTime())``),
  so SQLite's text comes back as a datetime, as MySQL's already does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import (
    BindParameter,
    Connection,
    DateTime,
    Integer,
    bindparam,
    literal_column,
    text,
)
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement, TextClause
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeEngine

from powerflow_common.errors import Unavailable

__all__ = [
    "BUCKET_EPOCH",
    "EpochBucket",
    "SqlTime",
    "UnsupportedDialect",
    "bind_text",
    "epoch_bucket",
    "sql_time",
    "sql_time_of",
]

# Buckets of readings count from here: a fixed instant, so a bucket's number never depends on
# the session's time zone or on the query's range (and 2000 is a whole number of minutes,
# quarter hours, hours and days after 1970, so the buckets fall on the clock).
BUCKET_EPOCH = datetime(2000, 1, 1)
_BUCKET_EPOCH_SQL = BUCKET_EPOCH.strftime("%Y-%m-%d %H:%M:%S")
_BUCKET_EPOCH_UNIX_S = 946_684_800  # BUCKET_EPOCH in seconds since 1970-01-01 UTC
_MICROSECONDS_PER_S = 1_000_000
_SECONDS_PER_DAY = 86_400


class UnsupportedDialect(Unavailable, LookupError):
    """A database dialect powerflow has no time arithmetic for."""


class SqlTime(Protocol):
    """SQL fragments over a naive-UTC DATETIME expression, for one dialect."""

    def plus_minutes(self, ts: str, minutes: str) -> str:
        """``ts`` moved by ``minutes`` (an integer SQL expression), still a datetime."""
        ...

    def day(self, ts: str) -> str:
        """The calendar day of ``ts``, as a value that groups and sorts by day."""
        ...

    def week(self, ts: str) -> str:
        """The Monday of ``ts``'s ISO week."""
        ...

    def month(self, ts: str) -> str:
        """The first day of ``ts``'s month."""
        ...

    def greatest(self, a: str, b: str) -> str:
        """The larger of two numbers (NULL if either is NULL, on every engine)."""
        ...


class MySqlTime:
    """MySQL and MariaDB."""

    def plus_minutes(self, ts: str, minutes: str) -> str:
        return f"{ts} + INTERVAL ({minutes}) MINUTE"

    def day(self, ts: str) -> str:
        return f"DATE({ts})"

    def week(self, ts: str) -> str:
        return f"DATE({ts}) - INTERVAL WEEKDAY({ts}) DAY"

    def month(self, ts: str) -> str:
        return f"DATE_FORMAT({ts}, '%Y-%m-01')"

    def greatest(self, a: str, b: str) -> str:
        return f"GREATEST({a}, {b})"


class SqliteTime:
    """SQLite: DATETIME is ISO text; its date functions read it and answer text."""

    def plus_minutes(self, ts: str, minutes: str) -> str:
        # A modifier is text: '540 minutes', '-300 minutes'.
        return f"datetime({ts}, ({minutes}) || ' minutes')"

    def day(self, ts: str) -> str:
        return f"date({ts})"

    def week(self, ts: str) -> str:
        # 'weekday 1' moves forward to the next Monday unless already one: six days back
        # first lands on the Monday on or before.
        return f"date({ts}, '-6 days', 'weekday 1')"

    def month(self, ts: str) -> str:
        return f"date({ts}, 'start of month')"

    def greatest(self, a: str, b: str) -> str:
        return f"MAX({a}, {b})"  # SQLite's scalar max of two or more arguments


_REGISTRY: dict[str, SqlTime] = {
    "mysql": MySqlTime(),
    "mariadb": MySqlTime(),
    "sqlite": SqliteTime(),
}


def sql_time(dialect_name: str) -> SqlTime:
    """The time arithmetic of a dialect (``conn.dialect.name``); UnsupportedDialect if none."""
    try:
        return _REGISTRY[dialect_name]
    except KeyError:
        raise UnsupportedDialect(
            f"No SQL time arithmetic for the {dialect_name!r} database; powerflow runs on"
            f" {', '.join(sorted(_REGISTRY))}."
        ) from None


def bind_text(sql: str, params: dict[str, Any], **column_types: TypeEngine[Any]) -> TextClause:
    """``text(sql)`` with its parameters bound (datetimes typed) and result columns typed.

    Only the columns named in ``column_types`` get a type (matched by name); the others come
    back as the driver gives them.
    """
    binds: list[BindParameter[Any]] = [
        bindparam(name, value, type_=DateTime())
        if isinstance(value, datetime)
        else bindparam(name, value)
        for name, value in params.items()
    ]
    clause = text(sql).bindparams(*binds)
    if column_types:
        # A TextualSelect; the callers only execute it, so the cast keeps the one return type.
        return clause.columns(**column_types)  # type: ignore[return-value]
    return clause


def sql_time_of(conn: Connection) -> SqlTime:
    """The time arithmetic of a connection's database."""
    return sql_time(conn.dialect.name)


class EpochBucket(FunctionElement[int]):
    """``floor((ts - BUCKET_EPOCH) / step_s)``: which ``step_s``-second bucket ``ts`` is in.

    A Core expression (for select()), compiled per dialect, exact to the microsecond on both
    sides of the epoch; ``step_s`` must divide a day (so buckets fall on the clock on SQLite,
    which counts from 1970). Build it with ``epoch_bucket(column, step_s)``.
    """

    type = Integer()
    inherit_cache = True
    name = "epoch_bucket"


def _bucket_args(element: EpochBucket, compiler: SQLCompiler, **kw: Any) -> tuple[str, int]:
    column, step = list(element.clauses)
    step_s = int(step.name)
    if step_s <= 0 or _SECONDS_PER_DAY % step_s:
        raise CompileError(f"EpochBucket needs a step that divides a day, not {step_s} s")
    return compiler.process(column, **kw), step_s


@compiles(EpochBucket, "mysql")
@compiles(EpochBucket, "mariadb")
def _bucket_mysql(element: EpochBucket, compiler: SQLCompiler, **kw: Any) -> str:
    column, step_s = _bucket_args(element, compiler, **kw)
    # Microseconds, not seconds: TIMESTAMPDIFF truncates towards zero, so in whole seconds a
    # reading at 23:44:59.3 before the epoch would count as 23:45:00 and land a bucket late.
    # The integer division by an integer is exact (DECIMAL), then FLOOR.
    return (
        f"FLOOR(TIMESTAMPDIFF(MICROSECOND, '{_BUCKET_EPOCH_SQL}', {column})"
        f" / {step_s * _MICROSECONDS_PER_S})"
    )


@compiles(EpochBucket, "sqlite")
def _bucket_sqlite(element: EpochBucket, compiler: SQLCompiler, **kw: Any) -> str:
    column, step_s = _bucket_args(element, compiler, **kw)
    # strftime('%s') floors to the whole second (stored times are after 1970, EARLIEST_TIME),
    # and flooring the second first does not change which whole-second bucket a time is in.
    seconds = f"(CAST(strftime('%s', {column}) AS INTEGER) - {_BUCKET_EPOCH_UNIX_S})"
    # SQLite's integer division truncates towards zero; readings before 2000 (negative
    # seconds) must fall in the bucket below, as MySQL's FLOOR puts them.
    return f"(({seconds} - ((({seconds} % {step_s}) + {step_s}) % {step_s})) / {step_s})"


@compiles(EpochBucket)
def _bucket_other(element: EpochBucket, compiler: SQLCompiler, **kw: Any) -> str:
    raise UnsupportedDialect(
        f"No SQL time arithmetic for the {compiler.dialect.name!r} database;"
        f" powerflow runs on {', '.join(sorted(_REGISTRY))}."
    )


def epoch_bucket(column: ColumnElement[Any], step_s: int) -> EpochBucket:
    """The bucket number of ``column`` in ``step_s``-second buckets from BUCKET_EPOCH."""
    # The step as literal SQL, not a parameter: it is part of the statement's cache key, so
    # a statement compiled for 60 s buckets is never reused for 900 s ones.
    return EpochBucket(column, literal_column(str(int(step_s)), Integer()))
