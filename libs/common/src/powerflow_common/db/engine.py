"""Engines and the one way to migrate a database: SQLite (the default) or MySQL/MariaDB.

SQLite engines are set up for several processes sharing one file (writers, the aggregator,
the API): WAL so that readers never wait for the writer, a busy timeout so that a writer
waits its turn instead of failing, foreign keys enforced like MariaDB's InnoDB, and
``synchronous=FULL`` because the writer acknowledges JetStream right after its commit: a
commit that a power cut could still undo would be a reading lost after its ack.
Transactions begin DEFERRED (a reader never takes the write lock); a write transaction asks
for ``BEGIN IMMEDIATE`` through the execution option below (``dialect.begin_write``).
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# UTC by offset (MariaDB's time zone tables are empty here) and strict values, always.
_INIT_COMMAND = (
    "SET time_zone = '+00:00', "
    "sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,ERROR_FOR_DIVISION_BY_ZERO'"
)

# How long a SQLite writer waits for another one to commit before "database is locked".
# Commits of a full writer batch take milliseconds; 30 s covers a slow disk and a checkpoint.
SQLITE_BUSY_TIMEOUT_S = 30.0
# FULL: a commit survives a power cut before the writer acks JetStream (NORMAL in WAL mode
# may lose the last commits on power loss; docs/architecture.md has the measured cost).
SQLITE_SYNCHRONOUS = "FULL"
# The execution option a connection sets to make its next transaction BEGIN IMMEDIATE.
SQLITE_BEGIN_OPTION = "powerflow_sqlite_begin"
SQLITE_BEGIN_IMMEDIATE = "IMMEDIATE"
# The files SQLite keeps beside a WAL database.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def is_sqlite(url: str | URL) -> bool:
    """True for a ``sqlite://`` URL."""
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str | URL) -> Path:
    """The database file of a ``sqlite:///<path>`` URL (in-memory databases are refused)."""
    database = make_url(url).database
    if not database or database == ":memory:":
        raise ValueError("a SQLite database URL must name a file: sqlite:///<path>/powerflow.db")
    return Path(database)


def make_engine(
    url: str,
    *,
    pool_size: int = 5,
    echo: bool = False,
    sqlite_synchronous: str = SQLITE_SYNCHRONOUS,
) -> Engine:
    """An engine for a SQLite file or a MySQL/MariaDB URL (UTC sessions, strict SQL mode).

    ``sqlite_synchronous`` exists for the benchmark that measures what FULL costs."""
    if is_sqlite(url):
        return _sqlite_engine(url, pool_size=pool_size, echo=echo, synchronous=sqlite_synchronous)
    return create_engine(
        url,
        pool_size=pool_size,
        pool_pre_ping=True,
        pool_recycle=3600,
        echo=echo,
        connect_args={"init_command": _INIT_COMMAND, "connect_timeout": 5, "charset": "utf8mb4"},
    )


def _sqlite_engine(
    url: str, *, pool_size: int, echo: bool, synchronous: str = SQLITE_SYNCHRONOUS
) -> Engine:
    sqlite_path(url).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        pool_size=pool_size,
        echo=echo,
        # Connections move between threads (the writer stores in asyncio.to_thread).
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
    )
    configure_sqlite(engine, synchronous=synchronous)
    return engine


def configure_sqlite(engine: Engine, *, synchronous: str = SQLITE_SYNCHRONOUS) -> None:
    """SQLAlchemy's documented pysqlite recipe, plus the pragmas every connection needs.

    pysqlite would otherwise BEGIN on its own before the first write only, so a transaction
    that reads first would not be one; SQLAlchemy emits BEGIN itself instead.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (the "begin" event)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute(f"PRAGMA synchronous = {synchronous}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN_OPTION)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == SQLITE_BEGIN_IMMEDIATE else "BEGIN")


def connect_failure(url: str, *, timeout_s: int = 2) -> str | None:
    """Why a connection to the server at ``url`` fails (the error's type and first line), or
    None when it answers; for tests and benchmarks deciding whether a server is there."""
    try:
        args = {} if is_sqlite(url) else {"connect_timeout": timeout_s}  # pymysql's
        probe = create_engine(url, connect_args=args)
        with probe.connect():
            pass
        probe.dispose()
    except Exception as exc:  # any failure to connect means: not there
        first_line = (str(exc).splitlines() or [""])[0][:120]
        return f"{type(exc).__name__}: {first_line}"
    return None


def ensure_database(url: str) -> None:
    """Create the URL's database when it does not exist yet (SQLite: its folder; MySQL:
    ``CREATE DATABASE`` utf8mb4)."""
    if is_sqlite(url):
        sqlite_path(url).parent.mkdir(parents=True, exist_ok=True)
        return
    parsed = make_url(url)
    name = parsed.database
    if not name:
        return
    server = create_engine(parsed.set(database=""), connect_args={"connect_timeout": 5})
    with server.begin() as conn:
        conn.execute(
            text(
                f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            )
        )
    server.dispose()


def drop_database(url: str) -> None:
    """Drop the URL's database if it exists (tests only; SQLite: the file and its WAL)."""
    if is_sqlite(url):
        path = sqlite_path(url)
        for suffix in ("", *SQLITE_SIDE_FILES):
            with contextlib.suppress(FileNotFoundError):
                path.with_name(path.name + suffix).unlink()
        return
    parsed = make_url(url)
    server = create_engine(parsed.set(database=""), connect_args={"connect_timeout": 5})
    with server.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{parsed.database}`"))
    server.dispose()


def alembic_config(url: str) -> Config:
    """Alembic configuration pointing at the packaged migrations and ``url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = url
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Create the database if needed and upgrade it to ``revision``."""
    ensure_database(url)
    command.upgrade(alembic_config(url), revision)
