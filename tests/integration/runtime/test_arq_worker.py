"""ProvisioningWorker's Redis plumbing: batched finishes (fakeredis), the Lua claim and the
batched read (real Redis)."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import pytest
from arq.connections import ArqRedis
from arq.jobs import Job, JobStatus
from arq.worker import func
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

from tests.support.ids import new_id
from tests.support.worker_runner import run_burst
from tests.unit.conftest import FAKE_QUEUE
from worker.runtime.arq_worker import CLAIM_SCRIPT, FinishBatches, _finish_commands, _ReadAhead
from worker.settings import Settings

QUEUE = FAKE_QUEUE


def finished(job_id: str, result: bytes, queue: str = QUEUE) -> partial[int]:
    return partial(
        _finish_commands,
        job_id=job_id,
        queue_name=queue,
        finish=True,
        result_data=result,
        result_timeout_s=60,
        keep_result_forever=False,
        incr_score=None,
        keep_in_progress=None,
    )


async def test_jobs_finishing_together_share_one_transaction(
    fake_redis: ArqRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    for job_id in ("a", "b", "c"):
        await fake_redis.set(f"arq:job:{job_id}", b"{}")
        await fake_redis.set(f"arq:in-progress:{job_id}", b"1")
        await fake_redis.zadd(QUEUE, {job_id: 1})
    transactions = 0
    pipeline = fake_redis.pipeline

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal transactions
        transactions += 1
        return pipeline(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fake_redis, "pipeline", counting)
    batches = FinishBatches(fake_redis)

    await asyncio.gather(*(batches.write(finished(job_id, job_id.encode())) for job_id in ("a", "b", "c")))

    assert transactions == 1
    assert await fake_redis.zcard(QUEUE) == 0
    assert await fake_redis.exists("arq:job:a", "arq:in-progress:b", "arq:job:c") == 0
    assert [await fake_redis.get(f"arq:result:{j}") for j in "abc"] == [b"a", b"b", b"c"]
    assert 0 < await fake_redis.pttl("arq:result:a") <= 60_000


async def test_a_job_whose_commands_fail_gets_its_own_error_and_the_others_are_written(
    fake_redis: ArqRedis,
) -> None:
    await fake_redis.set("not-a-queue", b"a string, where a sorted set is expected")
    batches = FinishBatches(fake_redis)

    outcomes = await asyncio.gather(
        batches.write(finished("good", b"ok")),
        batches.write(finished("bad", b"never mind", queue="not-a-queue")),
        return_exceptions=True,
    )

    assert outcomes[0] is None
    assert isinstance(outcomes[1], ResponseError)
    assert "WRONGTYPE" in str(outcomes[1])
    assert await fake_redis.get("arq:result:good") == b"ok"


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


async def test_a_job_asking_other_commands_than_its_batch_read_gets_them_from_redis(
    fake_redis: ArqRedis,
) -> None:
    await fake_redis.set("arq:job:j", b"body")
    read = _ReadAhead(fake_redis, "j", ["from the batch", 1, True], allow_abort=False)
    async with read as pipe:
        pipe.get("arq:job:j")
        pipe.incr("arq:retry:j")
        pipe.expire("arq:retry:j", 88400)
        assert await pipe.execute() == ["from the batch", 1, True]

    other = _ReadAhead(fake_redis, "j", ["from the batch", 1, True, 0], allow_abort=True)
    async with other as pipe:
        pipe.get("arq:job:j")
        pipe.incr("arq:retry:j")
        pipe.expire("arq:retry:j", 88400)
        assert await pipe.execute() == [b"body", 1, True]  # no ZREM of the abort set: not the batch's
