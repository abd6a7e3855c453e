"""Throw-away PostgreSQL databases: created, migrated and dropped by the tests (and `make bench`)."""

from __future__ import annotations

import asyncio
import os

from alembic import command
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from worker.db.migrations import alembic_config

# Where tests may create databases.
ADMIN_DATABASE_URL = os.environ.get(
    "TEST_ADMIN_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)


async def _admin(statement: str, admin_url: str) -> None:
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await admin.dispose()


async def create_database(name: str, admin_url: str = ADMIN_DATABASE_URL) -> str:
    """Create an empty database (through `admin_url`) and return its URL."""
    await _admin(f'CREATE DATABASE "{name}"', admin_url)
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def drop_database(name: str, admin_url: str = ADMIN_DATABASE_URL) -> None:
    """Drop a database this run created, disconnecting anything still attached."""
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', admin_url)


async def migrate(url: str, revision: str = "head") -> None:
    """`alembic upgrade <revision>` on `url` (in a thread: env.py runs its own event loop)."""
    await asyncio.to_thread(command.upgrade, alembic_config(url), revision)
