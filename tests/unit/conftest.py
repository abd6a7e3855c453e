"""The unit tier needs no PostgreSQL, no Redis and no network: fakeredis, settings that point nowhere,
and no socket but a Unix one (pytest-socket), so a test that reaches out fails on every machine."""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import asyncpg
import pytest
from arq.connections import ArqRedis
from fakeredis import FakeServer
from fakeredis.aioredis import FakeAsyncRedisConnection
from pytest_socket import disable_socket
from redis.asyncio import ConnectionPool

from tests.support.settings import make_settings
from tests.support.tracing import exported as exported
from worker.jobs.serialization import deserialize, serialize
from worker.settings import Settings

FAKE_QUEUE = "unit:queue"
"""The queue `fake_redis` defaults to."""

# Port 1 refuses every connection: a unit test that tried to reach a service would fail at once.
# In this tier no connection is even tried (`_no_network`).
NOWHERE_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:1/unit"
NOWHERE_REDIS_URL = "redis://127.0.0.1:1/0"


async def _refused(*args: Any, **kwargs: Any) -> NoReturn:
    """What asyncpg raises when PostgreSQL's port is closed, without a socket."""
    raise ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('127.0.0.1', 1)")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """No socket but a Unix one (the event loop's self-pipe); PostgreSQL refuses, as a closed port does.

    pytest-socket lifts the block after each test, so the other tiers keep their network.
    """
    disable_socket(allow_unix_socket=True)
    monkeypatch.setattr(asyncpg, "connect", _refused)


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
