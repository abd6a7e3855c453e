"""ProvisioningWorker on the real Redis: the batched read, and the room for large and sealed-password jobs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from arq.connections import ArqRedis
from arq.jobs import Job, JobStatus
from arq.worker import func
from redis.asyncio.client import Pipeline

from tests.support.ids import new_id
from tests.support.worker_runner import run_burst
from worker.runtime.claim import LARGE_JOB_BYTES
from worker.settings import Settings


async def _job_try(ctx: dict[str, Any]) -> int:
    return int(ctx["job_try"])


async def test_jobs_claimed_together_are_read_in_one_transaction_and_run_as_arq_runs_them(
    redis: ArqRedis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = settings.queue_name
    ids = [new_id("read") for _ in range(4)]
    for job_id in ids:
        assert await redis.enqueue_job("job_try", _job_id=job_id, _queue_name=queue) is not None
    await redis.set(f"arq:retry:{ids[0]}", b"2")  # tried twice before: this is its third try
    reads: list[int] = []
    execute = Pipeline.execute

    async def counting(self: Pipeline, raise_on_error: bool = True) -> list[Any]:
        job_reads = [a for a, _ in self.command_stack if a[0] == "GET" and str(a[1]).startswith("arq:job:")]
        if job_reads:
            reads.append(len(job_reads))
        return await execute(self, raise_on_error)

    monkeypatch.setattr(Pipeline, "execute", counting)

    await run_burst(
        settings,
        functions=[func(_job_try, name="job_try")],
        on_startup=None,
        on_shutdown=None,
        cron_jobs=[],
        max_jobs=10,
    )

    assert reads == [4]
    results = [
        await Job(job_id, redis, _queue_name=queue, _deserializer=redis.job_deserializer).result_info()
        for job_id in ids
    ]
    assert [(r.success, r.result, r.job_try) for r in results if r] == [(True, 3, 3)] + [(True, 1, 1)] * 3
    assert [
        await Job(job_id, redis, _queue_name=queue, _deserializer=redis.job_deserializer).status()
        for job_id in ids
    ] == [JobStatus.complete] * 4
    assert await redis.exists(*(f"arq:retry:{job_id}" for job_id in ids)) == 0


async def test_a_worker_holds_at_most_twice_bulk_concurrency_large_jobs_and_runs_them_all(
    redis: ArqRedis, settings: Settings
) -> None:
    queue, held, most_held = settings.queue_name, 0, 0

    async def large(ctx: dict[str, Any], blob: str) -> int:
        nonlocal held, most_held
        held += 1
        most_held = max(most_held, held)
        await asyncio.sleep(0.05)
        held -= 1
        return len(blob)

    ids = [new_id("large") for _ in range(7)]
    for job_id in ids:
        await redis.enqueue_job("large", "x" * LARGE_JOB_BYTES, _job_id=job_id, _queue_name=queue)

    async with asyncio.timeout(30):  # a worker that never frees its room would wait here for good
        await run_burst(
            settings.model_copy(update={"bulk_concurrency": 1}),
            functions=[func(large, name="large")],
            on_startup=None,
            on_shutdown=None,
            cron_jobs=[],
            max_jobs=10,
        )

    assert most_held == 2  # twice BULK_CONCURRENCY, though MAX_JOBS had room for all 7
    results = [
        await Job(job_id, redis, _queue_name=queue, _deserializer=redis.job_deserializer).result_info()
        for job_id in ids
    ]
    assert [r.success for r in results if r] == [True] * 7


async def _run_sealed_and_cheap(redis: ArqRedis, settings: Settings) -> tuple[int, list[str]]:
    """Six sealed-password jobs, then two cheap ones, queued before the worker starts: (most sealed
    jobs held at once, the order the jobs started in)."""
    queue, held, most_held, started = settings.queue_name, 0, 0, []

    async def sealed(ctx: dict[str, Any], password_sealed: str) -> None:
        nonlocal held, most_held
        started.append(password_sealed)
        held += 1
        most_held = max(most_held, held)
        await asyncio.sleep(0.05)  # hashing
        held -= 1

    async def cheap(ctx: dict[str, Any], email: str) -> None:
        started.append(email)

    ids = [new_id("s") for _ in range(6)] + [new_id("c") for _ in range(2)]
    for number, job_id in enumerate(ids[:6]):
        await redis.enqueue_job("sealed", password_sealed=f"s{number}", _job_id=job_id, _queue_name=queue)
    for number, job_id in enumerate(ids[6:]):
        await redis.enqueue_job("cheap", email=f"c{number}", _job_id=job_id, _queue_name=queue)
    due = int(time.time() * 1000) - 1000
    await redis.zadd(queue, {job_id: due + at for at, job_id in enumerate(ids)})  # in this order, not by id

    async with asyncio.timeout(30):  # a worker that never frees its room would wait here for good
        await run_burst(
            settings,
            functions=[func(sealed, name="sealed"), func(cheap, name="cheap")],
            on_startup=None,
            on_shutdown=None,
            cron_jobs=[],
            max_jobs=10,
        )
    return most_held, started


async def test_a_worker_holds_at_most_hash_jobs_sealed_password_jobs_and_claims_cheap_jobs_past_them(
    redis: ArqRedis, settings: Settings
) -> None:
    most_held, started = await _run_sealed_and_cheap(redis, settings.model_copy(update={"hash_jobs": 2}))

    assert most_held == 2  # HASH_JOBS, though MAX_JOBS had room for all 6
    assert sorted(started) == ["c0", "c1", "s0", "s1", "s2", "s3", "s4", "s5"]
    assert started[:4] == ["s0", "s1", "c0", "c1"]  # the first claim: the cheap jobs past s2…s5


async def test_hash_jobs_0_claims_sealed_password_jobs_up_to_max_jobs(
    redis: ArqRedis, settings: Settings
) -> None:
    """HASH_JOBS=0 is the worker before issue 20: the cheap jobs wait behind every sealed one."""
    most_held, started = await _run_sealed_and_cheap(redis, settings.model_copy(update={"hash_jobs": 0}))

    assert most_held == 6
    assert started == ["s0", "s1", "s2", "s3", "s4", "s5", "c0", "c1"]
