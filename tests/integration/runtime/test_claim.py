"""The claim on the real Redis (fakeredis runs no Lua): due queued jobs not running, up to the free
slots, and large jobs and sealed-password jobs only up to their own room."""

from __future__ import annotations

from typing import Any

import pytest
from arq.connections import ArqRedis
from redis.commands.core import AsyncScript

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


async def test_the_claim_takes_sealed_password_jobs_only_up_to_their_room_and_cheap_jobs_past_them(
    redis: ArqRedis, settings: Settings
) -> None:
    """A job whose `password_sealed` is a string will hash; one without it, or with null, will not.
    Those beyond the hashing room stay queued, and the cheap jobs behind them are claimed."""
    queue = settings.queue_name
    sealed1, sealed2, null, spaced, cheap = (
        new_id(name) for name in ("sealed1", "sealed2", "null", "spaced", "cheap")
    )
    bodies = {
        sealed1: b'{"f":"provision_user","k":{"email":"a@example.com","password_sealed":"gAAAA"}}',
        sealed2: b'{"f":"update_user","k":{"email":"b@example.com","password_sealed":"gAAAA"}}',
        null: b'{"f":"provision_user","k":{"email":"c@example.com","password_sealed":null}}',
        spaced: b'{"f": "update_user", "k": {"password_sealed" : "gAAAA", "email": "d@example.com"}}',
        cheap: b'{"f":"deactivate_user","k":{"email":"e@example.com"}}',
    }
    await redis.zadd(queue, {job_id: NOW - 10 + at for at, job_id in enumerate(bodies)})
    for job_id, body in bodies.items():
        await redis.set(f"arq:job:{job_id}", body, px=60_000)

    async def claim(hashing_room: int) -> list[ClaimedJob]:
        return await Claim()(
            redis,
            queue=queue,
            job_ids=list(bodies),
            now_ms=NOW,
            lifetime_ms=15_000,
            room=10,
            large_room=2,
            hashing_room=hashing_room,
        )

    assert await claim(hashing_room=1) == [
        ClaimedJob(sealed1, NOW - 10, large=False, hashing=True),
        ClaimedJob(null, NOW - 8, large=False, hashing=False),
        ClaimedJob(cheap, NOW - 6, large=False, hashing=False),
    ]
    assert await redis.exists(f"arq:in-progress:{sealed2}", f"arq:in-progress:{spaced}") == 0

    assert await claim(hashing_room=5) == [
        ClaimedJob(sealed2, NOW - 9, large=False, hashing=True),
        ClaimedJob(spaced, NOW - 7, large=False, hashing=True),
    ]


async def test_sealed_password_jobs_left_waiting_are_not_sent_again_until_there_is_room(
    redis: ArqRedis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the hashing room stays 0, each poll would otherwise read every queued password job
    again in the script (up to QUEUE_READ_LIMIT of them, hundreds of times a second)."""
    queue = settings.queue_name
    sealed, cheap = new_id("sealed"), new_id("cheap")
    await redis.zadd(queue, {sealed: NOW - 2, cheap: NOW - 1})
    await redis.set(f"arq:job:{sealed}", b'{"f":"update_user","k":{"password_sealed":"gAAAA"}}', px=60_000)
    await redis.set(f"arq:job:{cheap}", b'{"f":"delete_user","k":{"email":"e@example.com"}}', px=60_000)
    sent: list[list[str]] = []
    call = AsyncScript.__call__

    async def spying(self: AsyncScript, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        sent.append([str(arg) for arg in args[8:]])  # the job ids
        return await call(self, keys, args, client)

    monkeypatch.setattr(AsyncScript, "__call__", spying)
    claim = Claim()
    options: dict[str, Any] = {
        "queue": queue,
        "now_ms": NOW,
        "lifetime_ms": 15_000,
        "room": 10,
        "large_room": 2,
    }

    first = await claim(redis, job_ids=[sealed, cheap], hashing_room=0, **options)
    second = await claim(redis, job_ids=[sealed], hashing_room=0, **options)
    third = await claim(redis, job_ids=[sealed], hashing_room=1, **options)

    assert first == [ClaimedJob(cheap, NOW - 1, large=False, hashing=False)]
    assert second == []
    assert third == [ClaimedJob(sealed, NOW - 2, large=False, hashing=True)]
    assert sent == [[sealed, cheap], [sealed]]  # the second poll had nothing to ask Redis
