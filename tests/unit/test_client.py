"""The Python client, on fakeredis: what it writes, and what it refuses to write."""

from __future__ import annotations

import json

import pytest
from arq.connections import ArqRedis
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.unit.conftest import FAKE_QUEUE
from worker.client import DuplicateJob, ProvisioningClient
from worker.jobs.errors import InvalidPayload
from worker.jobs.stamps import MICROS, now_micros
from worker.passwords.policy import hash_password

QUEUE = FAKE_QUEUE


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
    as_of = stored["k"].pop("as_of")
    assert stored["k"] == {"email": "a@example.com", "role": "member", "password_hash": password_hash}
    assert abs(as_of - now_micros()) < 60 * MICROS  # stamped by the client's clock
    assert isinstance(stored["et"], int)
    assert await fake_redis.zscore(QUEUE, "j1") == stored["et"]
    assert 0 < await fake_redis.pttl("arq:job:j1") <= 86_400_000


async def test_optional_fields_left_out_are_not_sent(fake_redis: ArqRedis) -> None:
    await ProvisioningClient(fake_redis, queue_name=QUEUE).provision_user(
        email="b@example.com", role="viewer", job_id="j2"
    )
    assert set(json.loads(await fake_redis.get("arq:job:j2"))["k"]) == {"email", "role", "as_of"}


async def test_one_clients_commands_are_stamped_in_the_order_sent(fake_redis: ArqRedis) -> None:
    client = ProvisioningClient(fake_redis, queue_name=QUEUE)
    for n in range(50):  # many within one microsecond of each other
        await client.deactivate_user(email="o@example.com", job_id=f"o{n}")
    stamps = [json.loads(await fake_redis.get(f"arq:job:o{n}"))["k"]["as_of"] for n in range(50)]
    assert stamps == sorted(set(stamps))


async def test_an_explicit_as_of_is_sent_as_given(fake_redis: ArqRedis) -> None:
    client = ProvisioningClient(fake_redis, queue_name=QUEUE)
    await client.delete_user(email="x@example.com", job_id="x1", as_of="2026-11-26T09:30:00Z")
    await client.delete_user(email="x@example.com", job_id="x2", as_of=1_795_685_400_000_001)
    assert json.loads(await fake_redis.get("arq:job:x1"))["k"]["as_of"] == 1_795_685_400_000_000
    assert json.loads(await fake_redis.get("arq:job:x2"))["k"]["as_of"] == 1_795_685_400_000_001
    with pytest.raises(InvalidPayload, match="as_of: must be microseconds"):
        await client.delete_user(email="x@example.com", as_of=1_795_685_400)  # seconds, not µs


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


async def test_an_enqueue_whose_reply_was_lost_is_retried_under_the_same_id_and_queued_once(
    fake_redis: ArqRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = ProvisioningClient(fake_redis, queue_name=QUEUE, retry_for=5)
    real = fake_redis.enqueue_job
    calls: list[str | None] = []

    async def reply_lost_once(*args: object, **kwargs: object) -> object:
        calls.append(kwargs.get("_job_id"))  # type: ignore[arg-type]
        job = await real(*args, **kwargs)  # type: ignore[arg-type]
        if len(calls) == 1:
            raise RedisConnectionError("Connection closed by server.")  # queued, but the reply is lost
        return job

    monkeypatch.setattr(fake_redis, "enqueue_job", reply_lost_once)
    for job_id in (None, "given-id"):
        calls.clear()
        job = await client.deactivate_user(email="lost@example.com", job_id=job_id)
        assert len(calls) == 2
        assert calls[0] == calls[1] == job.job_id
    assert await fake_redis.zcard(QUEUE) == 2  # each command queued once


async def test_an_enqueue_gives_up_after_retry_for(
    monkeypatch: pytest.MonkeyPatch, fake_redis: ArqRedis
) -> None:
    client = ProvisioningClient(fake_redis, queue_name=QUEUE, retry_for=0.3)

    async def down(*args: object, **kwargs: object) -> object:
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6399. Connection refused.")

    monkeypatch.setattr(fake_redis, "enqueue_job", down)
    with pytest.raises(RedisConnectionError):
        await client.delete_user(email="x@example.com")
