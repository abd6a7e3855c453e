"""The unit tier needs no PostgreSQL and no Redis: fakeredis, and settings that point nowhere."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from arq.connections import ArqRedis
from fakeredis import FakeServer
from fakeredis.aioredis import FakeAsyncRedisConnection
from redis.asyncio import ConnectionPool

from tests.support.settings import make_settings
from worker.jobs.serialization import deserialize, serialize
from worker.settings import Settings

FAKE_QUEUE = "unit:queue"
"""The queue `fake_redis` defaults to."""

# Port 1 refuses every connection: a unit test that tried to reach a service would fail at once.
NOWHERE_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:1/unit"
NOWHERE_REDIS_URL = "redis://127.0.0.1:1/0"


@pytest.fixture
async def fake_redis() -> AsyncIterator[ArqRedis]:
    """An ARQ pool on a fakeredis server of its own, speaking the worker's JSON."""
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


@pytest.fixture
def settings() -> Settings:
    """Settings with a queue of this test's own, on URLs where no service listens."""
    return make_settings(NOWHERE_DATABASE_URL, redis_url=NOWHERE_REDIS_URL)
