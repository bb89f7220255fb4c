"""What each column accepts, read from the models, checked before a row reaches the database.

MariaDB in strict mode refuses a string longer than its column, an integer out of its type's
range, a NULL in a NOT NULL column and a date outside DATETIME's years; SQLite stores any of
them. So the rule is checked here, once, from the models' own column types, and a row that
breaks it is refused with the same reason on both backends, before any SQL runs (the writer
dead-letters it as ``db_refused``). The database's own refusal stays the last line.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Date, DateTime, Float, Integer, SmallInteger, String, Table
from sqlalchemy.types import TypeDecorator, TypeEngine

# Signed ranges of MySQL's INT and BIGINT (SQLite's INTEGER is 64-bit: BIGINT's range).
INT_RANGE = (-(2**31), 2**31 - 1)
BIGINT_RANGE = (-(2**63), 2**63 - 1)
SMALLINT_RANGE = (-(2**15), 2**15 - 1)
# MySQL's DATETIME and DATE hold the years 1000 to 9999.
YEAR_RANGE = (1000, 9999)


@dataclass(frozen=True, slots=True)
class ColumnLimit:
    """What one column accepts."""

    name: str
    nullable: bool
    max_length: int | None = None  # characters, for strings
    int_range: tuple[int, int] | None = None
    finite: bool = False  # floats: DOUBLE holds no NaN or infinity
    moment: bool = False  # DATETIME: aware, within YEAR_RANGE
    day: bool = False  # DATE: within YEAR_RANGE

    def problem(self, value: Any) -> str | None:
        """Why ``value`` does not fit, or None."""
        if value is None:
            return None if self.nullable else f"{self.name}: NULL in a NOT NULL column"
        too_long = self.max_length is not None and isinstance(value, str)
        if too_long and len(value) > (self.max_length or 0):
            return (
                f"{self.name}: data too long for the column ({len(value)} characters, "
                f"at most {self.max_length})"
            )
        if self.int_range is not None and isinstance(value, int) and not isinstance(value, bool):
            low, high = self.int_range
            if not low <= value <= high:
                return f"{self.name}: {value} out of range for the column ({low}..{high})"
        if self.finite and isinstance(value, float) and not math.isfinite(value):
            return f"{self.name}: {value} is not a finite number"
        if self.moment and isinstance(value, datetime):
            if value.tzinfo is None:
                return f"{self.name}: a time without a time zone where UTC is required"
            if not YEAR_RANGE[0] <= value.year <= YEAR_RANGE[1]:
                return f"{self.name}: year {value.year} out of range for the column"
        in_years = isinstance(value, date) and YEAR_RANGE[0] <= value.year <= YEAR_RANGE[1]
        if self.day and isinstance(value, date) and not in_years:
            return f"{self.name}: year {value.year} out of range for the column"
        return None


def _base_type(type_: TypeEngine[Any]) -> TypeEngine[Any]:
    while isinstance(type_, TypeDecorator):
        type_ = type_.impl_instance
    return type_


def _limit(name: str, nullable: bool, type_: TypeEngine[Any]) -> ColumnLimit:
    base = _base_type(type_)
    if isinstance(base, String):
        return ColumnLimit(name, nullable, max_length=base.length)
    if isinstance(base, BigInteger):
        return ColumnLimit(name, nullable, int_range=BIGINT_RANGE)
    if isinstance(base, SmallInteger):
        return ColumnLimit(name, nullable, int_range=SMALLINT_RANGE)
    if isinstance(base, Integer):
        return ColumnLimit(name, nullable, int_range=INT_RANGE)
    if isinstance(base, Float):
        return ColumnLimit(name, nullable, finite=True)
    if isinstance(base, DateTime):
        return ColumnLimit(name, nullable, moment=True)
    if isinstance(base, Date):
        return ColumnLimit(name, nullable, day=True)
    return ColumnLimit(name, nullable)


@functools.cache
def column_limits(table: Table) -> dict[str, ColumnLimit]:
    """Each column's limits, from the model's types (cached per table)."""
    return {c.name: _limit(c.name, bool(c.nullable), c.type) for c in table.columns}


def row_problem(table: Table, row: Mapping[str, Any]) -> str | None:
    """The first reason ``row`` does not fit ``table`` (``<table>.<column>: ...``), or None.

    A NOT NULL column missing from ``row`` is a problem unless it has a default.
    """
    limits = column_limits(table)
    for column in table.columns:
        limit = limits[column.name]
        if column.name not in row:
            has_default = column.default is not None or column.server_default is not None
            generated = column is table.autoincrement_column
            if not limit.nullable and not has_default and not generated:
                return f"{table.name}.{column.name}: missing from the row (NOT NULL)"
            continue
        problem = limit.problem(row[column.name])
        if problem is not None:
            return f"{table.name}.{problem}"
    unknown = sorted(set(row) - set(limits))
    if unknown:
        return f"{table.name}: no column {unknown[0]!r}"
    return None
