"""``powerflow backup``: a consistent copy of the SQLite database while a writer commits."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert
from typer.testing import CliRunner

from pf_testing import count_rows, wait_for
from powerflow.backup_cli import PARTIAL_SUFFIX
from powerflow.cli import app
from powerflow_common.db.engine import make_engine, migrate
from powerflow_common.db.models import READINGS
from powerflow_common.wire import Reading
from powerflow_writer.store import store_readings

# Enough rows that the copy is not instant (a few MB), few enough to load in a second.
PRELOADED_ROWS = 30_000
# Ids no registered device gets (readings has no foreign key): the batches' devices count alone.
PRELOADED_DEVICE_ID = 1_000_000
BATCH_READINGS = 50  # one batch, one transaction, one device code of its own
BATCHES_BEFORE_BACKUP = 5
START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    """A migrated SQLite database of this test's own (whatever backend the run uses)."""
    url = f"sqlite:///{tmp_path / 'powerflow.db'}"
    migrate(url)
    yield url


@pytest.fixture
def database(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


def preload(engine: Engine) -> None:
    rows = [
        {
            "device_id": PRELOADED_DEVICE_ID + i % 10,
            "ts": START + timedelta(seconds=5 * (i // 10)),
            "received_at": START,
            "power_w": float(i),
        }
        for i in range(PRELOADED_ROWS)
    ]
    with engine.begin() as conn:
        conn.execute(insert(READINGS), rows)


class BatchWriter(threading.Thread):
    """The writer's own store path, committing one batch after another until stopped."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(daemon=True)
        self.engine = engine
        self.committed: list[int] = []
        # Begun, committed or not: a batch may commit just before the backup reads, and be
        # recorded in ``committed`` only after the backup is done.
        self.begun: list[int] = []
        self.errors: list[BaseException] = []
        self.stop = threading.Event()

    def run(self) -> None:
        batch = 0
        while not self.stop.is_set():
            readings = [
                Reading(device_code=f"batch-{batch}", ts=START + timedelta(seconds=i), power_w=1.0)
                for i in range(BATCH_READINGS)
            ]
            self.begun.append(batch)
            try:
                store_readings(
                    self.engine, readings, received_at=datetime.now(UTC), max_gap=timedelta(60)
                )
            except BaseException as exc:  # reported by the test
                self.errors.append(exc)
                return
            self.committed.append(batch)
            batch += 1


def batch_counts(path: Path) -> dict[int, int]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT d.code, COUNT(*) FROM readings r JOIN devices d ON d.id = r.device_id"
            " WHERE d.code LIKE 'batch-%' GROUP BY d.code"
        ).fetchall()
    return {int(code.removeprefix("batch-")): count for code, count in rows}


def test_backup_is_consistent_while_a_writer_commits_and_restores(
    sqlite_url: str, database: Engine, tmp_path: Path
) -> None:
    preload(database)
    writer = BatchWriter(database)
    writer.start()
    try:
        wait_for(
            lambda: len(writer.committed) >= BATCHES_BEFORE_BACKUP or writer.errors,
            30,
            what="the writer's first batches",
        )
        before = list(writer.committed)
        dest = tmp_path / "backups" / "powerflow-copy.db"
        done = CliRunner().invoke(
            app, ["backup", str(dest)], env={"POWERFLOW_DATABASE_URL": sqlite_url}
        )
        begun = list(writer.begun)
    finally:
        writer.stop.set()
        writer.join(30)
    assert not writer.errors, writer.errors[0]
    assert done.exit_code == 0, done.output
    assert "backed up to" in done.output

    # Every batch is in the copy whole or not at all (one read transaction), every batch
    # committed before the backup began is in it, and nothing begun after it ended.
    copied = batch_counts(dest)
    assert set(copied.values()) == {BATCH_READINGS}
    assert set(before) <= set(copied) <= set(begun)
    assert not dest.with_name(dest.name + PARTIAL_SUFFIX).exists()

    # The copy is a database powerflow runs on: migrate is a no-op, every row is there.
    restored_url = f"sqlite:///{dest}"
    migrate(restored_url)
    restored = make_engine(restored_url)
    try:
        assert count_rows(restored) == PRELOADED_ROWS + BATCH_READINGS * len(copied)
    finally:
        restored.dispose()


def test_backup_refuses_to_overwrite_unless_forced(
    sqlite_url: str, database: Engine, tmp_path: Path
) -> None:
    dest = tmp_path / "existing.db"
    dest.write_bytes(b"an older backup")
    env = {"POWERFLOW_DATABASE_URL": sqlite_url}
    refused = CliRunner().invoke(app, ["backup", str(dest)], env=env)
    assert refused.exit_code == 3, refused.output
    assert "exists" in refused.output
    assert dest.read_bytes() == b"an older backup"

    forced = CliRunner().invoke(app, ["backup", str(dest), "--force"], env=env)
    assert forced.exit_code == 0, forced.output
    with sqlite3.connect(dest) as conn:
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"


def test_backup_of_mariadb_points_to_its_own_tools_and_connects_to_nothing(
    tmp_path: Path,
) -> None:
    # Port 1 on loopback: nothing listens, so a connection attempt would fail loudly.
    env = {"POWERFLOW_DATABASE_URL": "mysql+pymysql://root@127.0.0.1:1/powerflow"}
    dest = tmp_path / "never.db"
    refused = CliRunner().invoke(app, ["backup", str(dest)], env=env)
    assert refused.exit_code == 3, refused.output
    assert "mariadb-dump" in refused.output
    assert not dest.exists()
