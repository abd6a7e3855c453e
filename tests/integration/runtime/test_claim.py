"""The claim on the real Redis (fakeredis runs no Lua): due queued jobs not running, up to the free
slots, and large jobs only up to their own room."""

from __future__ import annotations

from arq.connections import ArqRedis

from tests.support.ids import new_id
from worker.runtime.claim import LARGE_JOB_BYTES, Claim, ClaimedJob
from worker.settings import Settings

NOW = 1_000_000


async def test_the_claim_takes_due_queued_jobs_not_running_up_to_the_free_slots(
    redis: ArqRedis, settings: Settings
) -> None:
    queue = settings.queue_name
    due1, running, later, gone, due2, due3 = (
        new_id(name) for name in ("due1", "run", "later", "gone", "due2", "due3")
    )
    await redis.zadd(
        queue, {due1: NOW - 5, running: NOW - 4, later: NOW + 1000, due2: NOW - 3, due3: NOW - 2}
    )
    await redis.set(f"arq:in-progress:{running}", b"1", px=60_000)

    claimed = await Claim()(
        redis,
        queue=queue,
        job_ids=[due1, running, later, gone, due2, due3],
        now_ms=NOW,
        lifetime_ms=15_000,
        room=2,
        large_room=2,
    )

    assert claimed == [ClaimedJob(due1, NOW - 5, False), ClaimedJob(due2, NOW - 3, False)]  # due3 waits
    assert 0 < await redis.pttl(f"arq:in-progress:{due1}") <= 15_000
    assert (
        await redis.exists(f"arq:in-progress:{due3}", f"arq:in-progress:{later}", f"arq:in-progress:{gone}")
        == 0
    )


async def test_the_claim_takes_large_jobs_only_up_to_their_own_room(
    redis: ArqRedis, settings: Settings
) -> None:
    """Bulk batches beyond the room stay queued (for another worker, or a later poll); small jobs
    behind them are still claimed."""
    queue = settings.queue_name
    big1, big2, small, big3 = (new_id(name) for name in ("big1", "big2", "small", "big3"))
    await redis.zadd(queue, {big1: NOW - 4, big2: NOW - 3, small: NOW - 2, big3: NOW - 1})
    for job_id in (big1, big2, big3):
        await redis.set(f"arq:job:{job_id}", b"x" * LARGE_JOB_BYTES, px=60_000)
    await redis.set(f"arq:job:{small}", b"x" * (LARGE_JOB_BYTES - 1), px=60_000)

    claimed = await Claim()(
        redis,
        queue=queue,
        job_ids=[big1, big2, small, big3],
        now_ms=NOW,
        lifetime_ms=15_000,
        room=10,
        large_room=1,
    )

    assert claimed == [ClaimedJob(big1, NOW - 4, True), ClaimedJob(small, NOW - 2, False)]
    assert await redis.exists(f"arq:in-progress:{big2}", f"arq:in-progress:{big3}") == 0
    assert await redis.zcard(queue) == 4  # claiming leaves jobs queued until they finish
