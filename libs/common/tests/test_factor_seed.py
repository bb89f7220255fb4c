"""Migration 0002 seeds exactly carbon.SEED_FACTORS, as literal rows."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import powerflow_common.db.migrations as migrations_pkg
from powerflow_common.carbon import SEED_FACTORS


def load_migration() -> ModuleType:
    path = Path(migrations_pkg.__path__[0]) / "versions" / "0002_emission_factors_seed.py"
    spec = importlib.util.spec_from_file_location("migration_0002", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_migration_seed_rows_are_exactly_the_seed_factors() -> None:
    rows = load_migration().SEED_ROWS
    assert [row["id"] for row in rows] == list(range(1, len(SEED_FACTORS) + 1))
    seeded = [
        (
            r["factor_set"],
            r["region"],
            r["valid_from"],
            r["valid_to"],
            r["kg_co2e_per_kwh"],
            r["source"],
            r["method"],
        )
        for r in rows
    ]
    expected = [
        (f.factor_set, f.region, f.valid_from, f.valid_to, f.kg_co2e_per_kwh, f.source, f.method)
        for f in SEED_FACTORS
    ]
    assert seeded == expected
