"""The async engine and session factory, built from settings when the worker starts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import uuid4

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from worker.settings import Settings

SessionFactory = async_sessionmaker[AsyncSession]


def create_engine(settings: Settings, *, reads_only: bool = False) -> AsyncEngine:
    """Build the async engine; nothing connects until it is first used.

    `reads_only`: for a process that only reads (the SCIM service), each statement runs on its own
    (AUTOCOMMIT): no BEGIN and ROLLBACK round trips around a single SELECT, and a pre-ping of one.
    It also keeps every connection it opens (DB_POOL_SIZE + DB_MAX_OVERFLOW, no overflow): its
    reads are short and many, and an overflow connection, closed on return, cost a connect per
    burst of requests, more than the reads it served.
    """
    pool: dict[str, Any] = {"pool_size": settings.db_pool_size, "max_overflow": settings.db_max_overflow}
    if reads_only:
        pool = {"isolation_level": "AUTOCOMMIT", "pool_size": sum(pool.values()), "max_overflow": 0}
    return create_async_engine(
        settings.database_url.get_secret_value(),
        **pool,
        echo=settings.sql_echo,
        pool_timeout=settings.db_pool_timeout,
        pool_pre_ping=True,
        connect_args={**settings.database_connect_args, **_statement_connect_args(settings)},
        # SQL parameters can hold password hashes: keep them out of logs and exception text.
        hide_parameters=True,
    )


GENERIC_PLANS = {"plan_cache_mode": "force_generic_plan"}
"""Session settings of a direct connection: a cached statement runs its generic plan.

Our statements have one shape each, and their parameters are arrays whose length PostgreSQL's
default (`auto`) plans for anew on every execution: 1.2 ms for a group's merge, more than running
it. A bulk batch, whose 1,000-row arrays do gain from a plan of their own, sets `auto` back for its
transaction (`UserRepository.apply_counting`); docs/performance.md has the figures.
"""


def _statement_connect_args(settings: Settings) -> dict[str, Any]:
    """How statements are prepared and planned: cached and generic on a direct connection.

    Behind a transaction pooler, each transaction may get another server connection: no statement
    caches, and prepared statements under unique names, so two clients' statements never collide
    on one server connection (SQLAlchemy's asyncpg dialect documents this recipe). Nothing is set at
    connect time there: PgBouncer refuses startup parameters it does not know, and statements that
    are prepared anew for each transaction are planned anew anyway.
    """
    if settings.database_pooler == "none":
        return {"server_settings": GENERIC_PLANS}
    return {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": lambda: f"__asyncpg_{uuid4().hex}__",
    }


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    """A session factory whose objects stay readable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def get_db_session(session_factory: SessionFactory) -> AsyncIterator[AsyncSession]:
    """Yield one session and close it afterwards; the caller owns commit or rollback."""
    async with session_factory() as session:
        yield session


db_session = asynccontextmanager(get_db_session)
"""`async with db_session(factory) as session:` — one session, always closed."""
