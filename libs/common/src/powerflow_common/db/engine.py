"""Engines and the one way to migrate a database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, make_url, text

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# UTC by offset (MariaDB's time zone tables are empty here) and strict values, always.
_INIT_COMMAND = (
    "SET time_zone = '+00:00', "
    "sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,ERROR_FOR_DIVISION_BY_ZERO'"
)


def make_engine(url: str, *, pool_size: int = 5, echo: bool = False) -> Engine:
    """An engine for a MySQL/MariaDB URL with UTC sessions and strict SQL mode."""
    return create_engine(
        url,
        pool_size=pool_size,
        pool_pre_ping=True,
        pool_recycle=3600,
        echo=echo,
        connect_args={"init_command": _INIT_COMMAND, "connect_timeout": 5, "charset": "utf8mb4"},
    )


def ensure_database(url: str) -> None:
    """Create the URL's database when it does not exist yet (utf8mb4)."""
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
    """Drop the URL's database if it exists (tests only)."""
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
