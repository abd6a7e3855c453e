"""Shared fixtures: a throw-away PostgreSQL database and run-scoped Redis keys.

Nothing here touches data it did not create: the test database has a random name and is dropped at
the end; Redis keys all carry this run's id (queue names and job ids) and only those are deleted.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis as sync_redis
from alembic import command
from arq.connections import ArqRedis
from fakeredis import FakeServer
from fakeredis.aioredis import FakeAsyncRedisConnection
from redis.asyncio import ConnectionPool
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from worker.client import connect_redis
from worker.db.migrations import alembic_config
from worker.db.session import SessionFactory, create_engine, create_session_factory
from worker.jobs.serialization import deserialize, serialize
from worker.settings import Settings

# Where tests may create databases, and which Redis db index they use (not the developer's 0).
ADMIN_DATABASE_URL = os.environ.get(
    "TEST_ADMIN_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
RUN_ID = uuid.uuid4().hex[:10]


def new_id(kind: str = "job") -> str:
    """An id unique to this test run, so that cleanup can find every key the run made."""
    return f"t{RUN_ID}-{kind}-{uuid.uuid4().hex[:12]}"


async def _admin(statement: str) -> None:
    admin = create_async_engine(ADMIN_DATABASE_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await admin.dispose()


async def create_database(name: str) -> str:
    """Create an empty database and return its URL."""
    await _admin(f'CREATE DATABASE "{name}"')
    return make_url(ADMIN_DATABASE_URL).set(database=name).render_as_string(hide_password=False)


async def drop_database(name: str) -> None:
    """Drop a database this run created, disconnecting anything still attached."""
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def migrate(url: str, revision: str = "head") -> None:
    """`alembic upgrade <revision>` on `url` (in a thread: env.py runs its own event loop)."""
    await asyncio.to_thread(command.upgrade, alembic_config(url), revision)


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    """A clean database for this run, built by the real migrations and dropped afterwards."""
    name = f"provisioning_test_{RUN_ID}"
    url = await create_database(name)
    try:
        await migrate(url)
        yield url
    finally:
        await drop_database(name)


@pytest.fixture(scope="session", autouse=True)
def _no_redis_keys_left_behind() -> Iterator[None]:
    """At the end of the run, delete whatever keys of this run a module's own cleanup missed."""
    yield
    client = sync_redis.Redis.from_url(TEST_REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"*t{RUN_ID}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
async def empty_database_url() -> AsyncIterator[str]:
    """A brand-new empty database for one test."""
    name = f"provisioning_test_{RUN_ID}_{uuid.uuid4().hex[:8]}"
    url = await create_database(name)
    try:
        yield url
    finally:
        await drop_database(name)


def make_settings(database_url: str, **overrides: object) -> Settings:
    """Settings for a test: its own database, Redis db index and queue; no `.env` read."""
    values: dict[str, object] = {
        "database_url": database_url,
        "redis_url": TEST_REDIS_URL,
        "queue_name": f"t{RUN_ID}:{uuid.uuid4().hex[:8]}:queue",
        "db_pool_size": 5,
        "log_format": "off",  # in-process workers leave pytest's log capture alone
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Settings on the test database with a queue of this test's own."""
    return make_settings(database_url)


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The test database's engine, built as the worker builds its own."""
    engine = create_engine(make_settings(database_url))
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def db_session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session inside an outer transaction that is rolled back: the test leaves nothing behind.

    `create_savepoint` makes the code's own commit/rollback act on a savepoint, so a service that
    rolls back cannot wipe the test's outer transaction.
    """
    async with engine.connect() as connection:
        transaction = await connection.begin()
        session = AsyncSession(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        try:
            yield session
        finally:
            await session.close()
            await transaction.rollback()


@pytest.fixture
async def committing_sessions(engine: AsyncEngine) -> AsyncIterator[SessionFactory]:
    """A real session factory whose commits persist; the users table is emptied afterwards."""
    try:
        yield create_session_factory(engine)
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("TRUNCATE users, user_changes RESTART IDENTITY"))


@pytest.fixture
async def fake_redis() -> AsyncIterator[ArqRedis]:
    """An ARQ pool on a fakeredis server of its own, speaking the worker's JSON (unit tests)."""
    pool = ConnectionPool(connection_class=FakeAsyncRedisConnection, server=FakeServer())
    redis = ArqRedis(connection_pool=pool)
    redis.job_serializer, redis.job_deserializer, redis.default_queue_name = (
        serialize,
        deserialize,
        FAKE_QUEUE,
    )
    try:
        yield redis
    finally:
        await redis.aclose(close_connection_pool=True)


FAKE_QUEUE = "unit:queue"
"""The queue `fake_redis` defaults to."""


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[ArqRedis]:
    """An ARQ Redis pool on the test db index; deletes every key this run created, and only those."""
    pool = await connect_redis(settings)
    try:
        yield pool
    finally:
        keys = [key async for key in pool.scan_iter(match=f"*t{RUN_ID}*", count=1000)]
        if keys:
            await pool.delete(*keys)
        await pool.aclose(close_connection_pool=True)
