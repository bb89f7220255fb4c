"""Alembic environment: the URL comes from the caller (``powerflow migrate``), never a file.

On SQLite, ALTERs run in batch mode (copy, rebuild, rename: SQLite alters little in place)
with foreign keys off, as SQLite's documentation prescribes for schema changes: with them on,
dropping the old copy of a table would cascade into the rows that reference it. The
foreign keys are checked once at the end instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text

from powerflow_common.db.engine import ensure_database, is_sqlite
from powerflow_common.db.models import Base

config = context.config
url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
if not url:
    raise RuntimeError("no database URL given to the migrations")

sqlite = is_sqlite(url)
if sqlite:
    ensure_database(url)
engine = create_engine(url)
with engine.connect() as connection:
    if sqlite:
        # Persistent in the file: every later connection finds the database in WAL mode.
        connection.exec_driver_sql("PRAGMA journal_mode = WAL")
        connection.exec_driver_sql("PRAGMA foreign_keys = OFF")
        connection.commit()  # end the implicit transaction: the migrations open their own
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        compare_type=True,
        render_as_batch=sqlite,
    )
    with context.begin_transaction():
        context.run_migrations()
    if sqlite:
        broken = connection.execute(text("PRAGMA foreign_key_check")).fetchall()
        if broken:
            raise RuntimeError(f"the migrations left rows with broken foreign keys: {broken[:10]}")
engine.dispose()
