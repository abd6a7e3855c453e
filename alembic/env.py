"""Alembic environment: async, URL from the worker's settings, one migrator at a time.

Tests and tools can hand over what to migrate through `config.attributes`:
- `connection`: a sync `Connection`, or an `AsyncEngine` (pytest-alembic passes one);
- `url`: a database URL to use instead of `DATABASE_URL`.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from worker.db.migrations import MIGRATION_LOCK_KEY
from worker.db.models import Base
from worker.settings import get_settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _database_url() -> str:
    url = config.attributes.get("url")
    if url is not None:
        return str(url)
    try:
        return get_settings().migration_url
    except ValueError as refusal:
        raise SystemExit(f"error: {refusal}") from None


def run_migrations_offline() -> None:
    """Emit SQL to stdout instead of running it (`alembic upgrade head --sql`)."""
    context.configure(
        url=_database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    """Run the migrations on `connection`, holding an advisory lock for the whole transaction."""
    context.configure(connection=connection, target_metadata=target_metadata, compare_server_default=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Two releases migrating at once: the second waits here, then finds the schema at head.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        context.run_migrations()


async def run_async_migrations(engine: AsyncEngine, *, dispose: bool) -> None:
    """Run the migrations through an async engine."""
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
    finally:
        if dispose:
            await engine.dispose()


def run_migrations_online() -> None:
    """Run the migrations against a live database."""
    given = config.attributes.get("connection")
    if isinstance(given, Connection):
        do_run_migrations(given)
    elif isinstance(given, AsyncEngine):
        # Borrowed engine: dispose its pool afterwards, since its connections belong to this loop.
        asyncio.run(run_async_migrations(given, dispose=True))
    elif given is None:
        engine = create_async_engine(_database_url(), poolclass=pool.NullPool, hide_parameters=True)
        asyncio.run(run_async_migrations(engine, dispose=True))
    else:
        raise TypeError(f"config.attributes['connection'] must be a Connection or AsyncEngine, not {given!r}")


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
