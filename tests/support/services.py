"""The fixtures of the tiers that run on services: a throw-away PostgreSQL database and run-scoped
Redis keys. `tests/integration/conftest.py` and `tests/e2e/conftest.py` import them; the unit tier
does not, so nothing it runs can reach a service.

Nothing here touches data it did not create: the test database has a random name and is dropped at
the end; Redis keys all carry this run's id (queue names and job ids) and only those are deleted.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis as sync_redis
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.support.databases import create_database, drop_database, migrate
from tests.support.ids import RUN_ID
from tests.support.queries import EMPTY_TABLES
from tests.support.settings import TEST_REDIS_URL, make_settings
from worker.client import connect_redis
from worker.db.session import SessionFactory, create_engine, create_session_factory
from worker.settings import Settings


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    """A clean database for this run, built by the real migrations and dropped afterwards."""
    name = f"provisioning_test_{RUN_ID}_{uuid.uuid4().hex[:4]}"
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
            await conn.execute(EMPTY_TABLES)


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
