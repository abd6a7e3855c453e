"""The read-ahead on fakeredis: a job gets its batch's replies only for the commands the batch read."""

from __future__ import annotations

from arq.connections import ArqRedis

from worker.runtime.read_ahead import RETRY_COUNTER_LIFETIME_S, ReadAhead


async def test_a_job_asking_other_commands_than_its_batch_read_gets_them_from_redis(
    fake_redis: ArqRedis,
) -> None:
    await fake_redis.set("arq:job:j", b"body")
    read = ReadAhead(fake_redis, "j", ["from the batch", 1, True], allow_abort=False)
    async with read as pipe:
        pipe.get("arq:job:j")
        pipe.incr("arq:retry:j")
        pipe.expire("arq:retry:j", RETRY_COUNTER_LIFETIME_S)
        assert await pipe.execute() == ["from the batch", 1, True]

    other = ReadAhead(fake_redis, "j", ["from the batch", 1, True, 0], allow_abort=True)
    async with other as pipe:
        pipe.get("arq:job:j")
        pipe.incr("arq:retry:j")
        pipe.expire("arq:retry:j", RETRY_COUNTER_LIFETIME_S)
        assert await pipe.execute() == [b"body", 1, True]  # no ZREM of the abort set: not the batch's
