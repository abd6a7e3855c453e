"""Waiting for results through the finish announcements, with a real worker on real Redis."""

from __future__ import annotations

import asyncio

import pytest
from arq.connections import ArqRedis

from tests.support.ids import new_id
from tests.support.worker_runner import run_burst
from worker.client import ProvisioningClient
from worker.jobs.errors import JobFailed
from worker.jobs.finished import finished_channel
from worker.jobs.serialization import serialize
from worker.settings import Settings

pytestmark = pytest.mark.usefixtures("committing_sessions")


async def test_the_worker_announces_each_finished_job_on_the_queue_s_channel(
    redis: ArqRedis, settings: Settings
) -> None:
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(finished_channel(settings.queue_name))
        job = await client.provision_user(email="heard@example.com", role="member", job_id=new_id())
        await run_burst(settings)
        message = None
        async with asyncio.timeout(5):
            while message is None:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
    assert message["data"] == job.job_id.encode()


async def test_wait_for_returns_the_finished_results_and_leaves_out_the_unfinished(
    redis: ArqRedis, settings: Settings
) -> None:
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    try:
        done = await client.provision_user(email="done@example.com", role="admin", job_id=new_id())
        intent = await client.set_user_role(email="intent@example.com", role="admin", job_id=new_id())
        worker = asyncio.create_task(run_burst(settings))
        results = await client.wait_for([done.job_id, intent.job_id], within=30)
        await worker
        assert results[done.job_id].success is True
        assert results[done.job_id].result["status"] == "created"
        assert set(results) == {done.job_id, intent.job_id}

        missing = await client.wait_for([done.job_id, "never-enqueued"], within=0.3)
        assert set(missing) == {done.job_id}
    finally:
        await client.aclose()


async def test_a_failed_job_comes_back_as_job_failed(redis: ArqRedis, settings: Settings) -> None:
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    try:
        job = await client.update_user(email="ghost@example.com", active=True, job_id=new_id())
        fast = settings.model_copy(update={"max_tries": 1})
        worker = asyncio.create_task(run_burst(fast))
        results = await client.wait_for([job.job_id], within=30)
        await worker
        (result,) = results.values()
        assert result.success is False
        assert isinstance(result.result, JobFailed)
        assert result.result.error_type == "GaveUp"
    finally:
        await client.aclose()


async def test_a_result_written_without_an_announcement_is_still_found(
    redis: ArqRedis, settings: Settings
) -> None:
    """An older worker (or a lost message) writes no announcement: the waiter's own reads find it."""
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    job_id = new_id()
    try:
        waiting = asyncio.create_task(client.wait_for([job_id], within=30))
        await asyncio.sleep(0.1)
        result = {"t": 1, "f": "delete_user", "a": [], "k": {}, "et": 1, "s": True, "r": {"status": "absent"}}
        result |= {"st": 1, "ft": 2, "q": settings.queue_name}
        await redis.set(f"arq:result:{job_id}", serialize(result), px=60_000)
        found = await waiting
        assert found[job_id].result == {"status": "absent"}
    finally:
        await client.aclose()
