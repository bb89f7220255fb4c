"""The migrations build the models' schema on both backends, and their data steps run on both.

A fresh SQLite file and a fresh MariaDB database are migrated to head; the schema read back
from each is compared with ``models.metadata``: tables, columns (type family, nullability),
primary keys, indexes and unique constraints.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, inspect, text

from conftest import MARIADB, SERVER_URL, SQLITE
from powerflow_common.db.engine import drop_database, make_engine, migrate
from powerflow_common.db.models import Base

pytestmark = pytest.mark.both_backends

# Loosely: what a column's type is, whatever each backend calls it.
_TYPE_FAMILIES: tuple[tuple[type[Any], str], ...] = (
    (sa.Boolean, "bool"),
    (sa.DateTime, "datetime"),
    (sa.Date, "date"),
    (sa.Float, "float"),
    (sa.Integer, "int"),
    (sa.JSON, "json"),
    (sa.Text, "text"),
    (sa.String, "string"),
)


def _family(type_: Any, dialect: sa.Dialect) -> str:
    impl = type_.load_dialect_impl(dialect) if isinstance(type_, sa.TypeDecorator) else type_
    impl = impl.dialect_impl(dialect)
    for base, name in _TYPE_FAMILIES:
        if isinstance(impl, base):
            if name == "text" and getattr(impl, "length", None):
                return "string"
            return name
    if dialect.name != "sqlite" and impl.__class__.__name__ in ("TINYINT",):
        return "bool"  # MariaDB's BOOLEAN reads back as TINYINT(1)
    return type(impl).__name__.lower()


def _normalise(family: str, dialect: str) -> str:
    # MariaDB reflects BOOLEAN as TINYINT(1) and JSON as LONGTEXT; both are what we asked for.
    if dialect != "sqlite" and family == "int":
        return "int|bool"
    if dialect != "sqlite" and family in ("text", "string"):
        return "text|string|json"
    return family


@pytest.fixture
def fresh_url(database_backend: str, tmp_path: Path) -> Iterator[str]:
    """A database of this test's own, not yet migrated."""
    if database_backend == SQLITE:
        url = f"sqlite:///{tmp_path / 'fresh' / 'powerflow.db'}"
    else:
        assert database_backend == MARIADB
        url = f"{SERVER_URL}/pf_test_mig_{uuid.uuid4().hex[:10]}"
    yield url
    drop_database(url)


def _schema(engine: Engine) -> dict[str, Any]:
    inspector = inspect(engine)
    dialect = engine.dialect.name
    schema: dict[str, Any] = {}
    for table in inspector.get_table_names():
        if table == "alembic_version":
            continue
        columns = {
            c["name"]: (_normalise(_family(c["type"], engine.dialect), dialect), c["nullable"])
            for c in inspector.get_columns(table)
        }
        uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)}
        indexes = set()
        for index in inspector.get_indexes(table):
            cols = tuple(str(c) for c in index["column_names"])
            if index.get("unique"):
                uniques.add(cols)  # MariaDB reports a unique constraint as a unique index
            else:
                indexes.add(cols)
        primary = tuple(inspector.get_pk_constraint(table)["constrained_columns"])
        schema[table] = {"columns": columns, "pk": primary, "uniques": uniques, "idx": indexes}
    return schema


def _model_schema(engine: Engine) -> dict[str, Any]:
    dialect = engine.dialect.name
    schema: dict[str, Any] = {}
    for table in Base.metadata.sorted_tables:
        columns = {}
        for c in table.columns:
            family = _family(c.type, engine.dialect)
            reflected = family
            if family in ("bool", "int"):
                reflected = "int" if dialect != "sqlite" else family
            if family == "json" and dialect != "sqlite":
                reflected = "text"
            columns[c.name] = (_normalise(reflected, dialect), c.nullable)
        uniques = {
            tuple(col.name for col in u.columns)
            for u in table.constraints
            if isinstance(u, sa.UniqueConstraint)
        }
        uniques |= {tuple(c.name for c in i.columns) for i in table.indexes if i.unique}
        uniques |= {(c.name,) for c in table.columns if c.unique}
        indexes = {tuple(c.name for c in i.columns) for i in table.indexes if not i.unique}
        indexes |= {(c.name,) for c in table.columns if c.index and not c.unique}
        primary = tuple(c.name for c in table.primary_key.columns)
        schema[table.name] = {"columns": columns, "pk": primary, "uniques": uniques, "idx": indexes}
    return schema


def test_a_fresh_database_migrated_to_head_has_the_models_schema(fresh_url: str) -> None:
    migrate(fresh_url)
    engine = make_engine(fresh_url)
    try:
        reflected, models = _schema(engine), _model_schema(engine)
        assert sorted(reflected) == sorted(models)
        for table, expected in models.items():
            got = reflected[table]
            assert got["columns"] == expected["columns"], table
            assert got["pk"] == expected["pk"], table
            assert got["uniques"] == expected["uniques"], table
            # MariaDB adds an index for each foreign key; the models' indexes must all be there.
            assert expected["idx"] <= got["idx"], table
            if engine.dialect.name == "sqlite":
                assert got["idx"] == expected["idx"], table
        with engine.connect() as conn:
            factors = conn.execute(text("SELECT COUNT(*) FROM emission_factors")).scalar_one()
        assert factors == 8  # 0002's seed
    finally:
        engine.dispose()


def test_the_data_steps_of_0003_0005_and_0006_run_on_existing_rows(fresh_url: str) -> None:
    migrate(fresh_url, "0002")
    engine = make_engine(fresh_url)
    first_seen = datetime(2025, 3, 1, 12, 0, tzinfo=UTC).replace(tzinfo=None)
    try:
        with engine.begin() as conn:
            for code, fmt in (("a4-cf-12-9b-00-01", "original"), ("shelly-1", "shelly")):
                conn.execute(
                    text(
                        "INSERT INTO devices (code, payload_format, meter_role, bidirectional,"
                        " first_seen_at, last_seen_at) VALUES (:code, :fmt, 'standalone', 0,"
                        " :at, :at)"
                    ),
                    {"code": code, "fmt": fmt, "at": first_seen},
                )
        migrate(fresh_url)
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT d.code, d.admitted_by, d.legacy_topic, s.recorded_by, s.valid_from"
                    " FROM devices d JOIN device_sites s ON s.device_id = d.id ORDER BY d.code"
                )
            ).all()
        assert [(r[0], r[1], bool(r[2]), r[3]) for r in rows] == [
            ("A4:CF:12:9B:00:01", "migration 0006", True, "migration 0005"),
            ("shelly-1", "migration 0006", False, "migration 0005"),
        ]
        assert all(str(r[4]).startswith("2025-03-01 12:00:00") for r in rows)
    finally:
        engine.dispose()
