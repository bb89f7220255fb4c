"""``powerflow backup``: a consistent copy of the SQLite database while everything runs.

A plain ``cp`` of a live WAL database can miss the commits that still live in
``powerflow.db-wal``, or copy the two files at different moments. SQLite's online backup API,
run in ONE step (every page at once), copies inside one read transaction: consistent, and
the writers go on meanwhile (WAL readers never block the writer). The sqlite3 shell's
``.backup`` copies 100 pages a step and starts over whenever someone writes in between, so
it may never finish on a busy database. MariaDB/MySQL have their own tools (mariadb-dump,
mariabackup): docs/operations.md, "Backup and restore".
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from powerflow.cli_settings import command_settings
from powerflow_common.errors import InvalidInput
from powerflow_common.settings import redact_url

console = Console(stderr=True)

# Exit codes: 2 is "cannot start" (cli_settings); 3 is a refused destination or engine, so a
# script can tell "nothing was tried" from "the copy failed" (1).
EXIT_COPY_FAILED = 1
EXIT_REFUSED = 3
ALL_PAGES = -1  # one step: one read transaction, never restarted by a concurrent writer
# A writer holding the lock briefly (a commit) is waited for, as every connection does.
BUSY_TIMEOUT_S = 30.0
PARTIAL_SUFFIX = ".partial"


class BackupRefused(InvalidInput):
    """The backup was not attempted: the destination or the source is not acceptable."""


@dataclass(frozen=True, slots=True)
class BackupResult:
    """What a backup copied: its file, size, readings and the schema revision it holds."""

    path: Path
    size_bytes: int
    readings: int
    revision: str | None


def backup_sqlite(source: Path, dest: Path, *, overwrite: bool = False) -> BackupResult:
    """Copy ``source`` to ``dest`` consistently, check the copy, then move it into place.

    The copy is written beside ``dest`` as ``<dest>.partial`` and renamed only once it passed
    SQLite's quick_check, so ``dest`` is never a half-written file, even after a crash.
    """
    if not source.is_file():
        raise BackupRefused(f"no SQLite database at {source}")
    if dest.resolve() == source.resolve():
        raise BackupRefused("the destination is the database itself")
    if dest.exists() and not overwrite:
        raise BackupRefused(f"{dest} exists: choose another name, or --force to replace it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + PARTIAL_SUFFIX)
    partial.unlink(missing_ok=True)
    try:
        with (
            contextlib.closing(sqlite3.connect(source, timeout=BUSY_TIMEOUT_S)) as src,
            contextlib.closing(sqlite3.connect(partial)) as copy,
        ):
            src.backup(copy, pages=ALL_PAGES)
            result = _check(copy, partial)
        with partial.open("rb") as written:
            os.fsync(written.fileno())  # on disk before it takes the final name
        os.replace(partial, dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return BackupResult(dest, dest.stat().st_size, result.readings, result.revision)


def _check(copy: sqlite3.Connection, path: Path) -> BackupResult:
    verdict = [row[0] for row in copy.execute("PRAGMA quick_check")]
    if verdict != ["ok"]:
        raise sqlite3.DatabaseError(f"the copy failed SQLite's quick_check: {verdict[:5]}")
    tables = {row[0] for row in copy.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    readings = (
        int(copy.execute("SELECT COUNT(*) FROM readings").fetchone()[0])
        if "readings" in tables
        else 0
    )
    revision = (
        copy.execute("SELECT version_num FROM alembic_version").fetchone()
        if "alembic_version" in tables
        else None
    )
    return BackupResult(path, 0, readings, None if revision is None else str(revision[0]))


def backup(
    dest: Annotated[Path, typer.Argument(help="The backup file to write (a SQLite database)")],
    force: Annotated[bool, typer.Option("--force", help="Replace DEST if it exists")] = False,
) -> None:
    """Copy the SQLite database consistently while powerflow runs (MariaDB: mariadb-dump)."""
    from powerflow_common.db.engine import is_sqlite, sqlite_path  # SQLAlchemy: only when run

    settings = command_settings("database")
    url = settings.database_url.get_secret_value()
    if not is_sqlite(url):
        console.print(
            f"[red]powerflow backup copies a SQLite database[/]; {redact_url(url)} is not one. "
            "For MariaDB/MySQL use `mariadb-dump --single-transaction` or mariabackup "
            '(docs/operations.md, "Backup and restore").'
        )
        raise typer.Exit(EXIT_REFUSED)
    try:
        result = backup_sqlite(sqlite_path(url), dest, overwrite=force)
    except BackupRefused as exc:
        console.print(f"[red]backup refused[/]: {exc}")
        raise typer.Exit(EXIT_REFUSED) from None
    except sqlite3.Error as exc:
        console.print(f"[red]backup failed[/], nothing written to {dest}: {exc}")
        raise typer.Exit(EXIT_COPY_FAILED) from None
    console.print(
        f"backed up to {result.path}: {result.size_bytes:,} bytes, {result.readings:,} "
        f"readings, schema {result.revision or 'not migrated'}. Restore: stop powerflow, "
        "replace powerflow.db with this file and delete powerflow.db-wal and -shm, start it."
    )
