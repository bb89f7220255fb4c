"""Alembic environment: the URL comes from the caller (``powerflow migrate``), never a file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from powerflow_common.db.models import Base

config = context.config
url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
if not url:
    raise RuntimeError("no database URL given to the migrations")

engine = create_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
