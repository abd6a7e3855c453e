"""The Python client, on fakeredis: what it writes, and what it refuses to write."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from arq.connections import ArqRedis
from fakeredis import FakeServer
from fakeredis.aioredis import FakeAsyncRedisConnection
from redis.asyncio import ConnectionPool

from worker.client import DuplicateJob, ProvisioningClient
from worker.errors import InvalidPayload
from worker.security import hash_password
from worker.serialization import deserialize, serialize

QUEUE = "unit:queue"


@pytest.fixture
async def fake_redis() -> AsyncIterator[ArqRedis]:
    pool = ConnectionPool(connection_class=FakeAsyncRedisConnection, server=FakeServer())
    redis = ArqRedis(connection_pool=pool)
    redis.job_serializer, redis.job_deserializer, redis.default_queue_name = serialize, deserialize, QUEUE
    try:
        yield redis
    finally:
        await redis.aclose(close_connection_pool=True)


async def test_enqueue_writes_the_documented_json_job(fake_redis: ArqRedis) -> None:
    client = ProvisioningClient(fake_redis, queue_name=QUEUE)
    password_hash = hash_password("pw-for-test")

    job = await client.provision_user(
        email="a@example.com", role="member", password_hash=password_hash, job_id="j1"
    )

    assert job.job_id == "j1"
    stored = json.loads(await fake_redis.get("arq:job:j1"))
    assert stored["f"] == "provision_user"
    assert stored["a"] == []
    assert stored["k"] == {"email": "a@example.com", "role": "member", "password_hash": password_hash}
    assert isinstance(stored["et"], int)
    assert await fake_redis.zscore(QUEUE, "j1") == stored["et"]
    assert 0 < await fake_redis.pttl("arq:job:j1") <= 86_400_000


async def test_optional_fields_left_out_are_not_sent(fake_redis: ArqRedis) -> None:
    await ProvisioningClient(fake_redis, queue_name=QUEUE).provision_user(
        email="b@example.com", role="viewer", job_id="j2"
    )
    assert json.loads(await fake_redis.get("arq:job:j2"))["k"] == {"email": "b@example.com", "role": "viewer"}


async def test_invalid_payload_is_refused_before_anything_is_written(fake_redis: ArqRedis) -> None:
    client = ProvisioningClient(fake_redis, queue_name=QUEUE)
    with pytest.raises(InvalidPayload, match="password_hash: must be an argon2id PHC string"):
        await client.provision_user(email="a@example.com", role="admin", password_hash="plaintext!")
    with pytest.raises(InvalidPayload, match="unknown job function 'nuke'"):
        await client.enqueue("nuke", email="a@example.com")
    assert await fake_redis.dbsize() == 0


async def test_a_live_job_id_cannot_be_reused(fake_redis: ArqRedis) -> None:
    client = ProvisioningClient(fake_redis, queue_name=QUEUE)
    await client.delete_user(email="a@example.com", job_id="same")
    with pytest.raises(DuplicateJob, match="job same already exists"):
        await client.deactivate_user(email="a@example.com", job_id="same")
    assert json.loads(await fake_redis.get("arq:job:same"))["f"] == "delete_user"
