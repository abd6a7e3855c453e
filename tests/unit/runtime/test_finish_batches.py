"""The finish batches on fakeredis: jobs finishing together share one transaction, and each job gets
its own commands' errors."""

from __future__ import annotations

import asyncio

import pytest
from arq.connections import ArqRedis
from redis.exceptions import ResponseError

from tests.unit.conftest import FAKE_QUEUE
from worker.runtime.finish_batches import Finish, FinishBatches

QUEUE = FAKE_QUEUE


def finished(job_id: str, result: bytes, queue: str = QUEUE) -> Finish:
    return Finish(
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
