"""ProvisioningWorker's Redis plumbing on the real Redis: the Lua claim and the batched read."""

from __future__ import annotations

from typing import Any

import pytest
from arq.connections import ArqRedis
from arq.jobs import Job, JobStatus
from arq.worker import func
from redis.asyncio.client import Pipeline

from tests.support.ids import new_id
from tests.support.worker_runner import run_burst
from worker.runtime.arq_worker import CLAIM_SCRIPT
from worker.settings import Settings


async def test_the_claim_takes_due_queued_jobs_not_running_up_to_the_free_slots(
    redis: ArqRedis, settings: Settings
) -> None:
    """On the real Redis (fakeredis runs no Lua): the run's own queue and job ids."""
    queue, now = settings.queue_name, 1_000_000
    due1, running, later, gone, due2, due3 = (
        new_id(name) for name in ("due1", "run", "later", "gone", "due2", "due3")
    )
    await redis.zadd(
        queue, {due1: now - 5, running: now - 4, later: now + 1000, due2: now - 3, due3: now - 2}
    )
    await redis.set(f"arq:in-progress:{running}", b"1", px=60_000)
    claim = redis.register_script(CLAIM_SCRIPT)

    claimed = await claim(
        keys=[queue], args=[now, 15_000, 2, "arq:in-progress:", due1, running, later, gone, due2, due3]
    )

    assert claimed == [due1.encode(), b"999995", due2.encode(), b"999997"]  # 2 slots: due3 waits
    assert 0 < await redis.pttl(f"arq:in-progress:{due1}") <= 15_000
    assert (
        await redis.exists(f"arq:in-progress:{due3}", f"arq:in-progress:{later}", f"arq:in-progress:{gone}")
        == 0
    )


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
