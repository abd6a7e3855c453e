"""The one retry helper: tries again after retryable errors only, within its deadline, then gives up
with the last error."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from worker.retrying import cannot_reach, is_redis_unreachable, retry_within


async def test_a_retryable_failure_is_tried_again_until_it_succeeds() -> None:
    tries: list[int] = []
    waits: list[float] = []

    async def flaky() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise RedisConnectionError("Connection refused.")
        return "done"

    result = await retry_within(
        flaky,
        within=5,
        retryable=is_redis_unreachable,
        base=0.001,
        cap=0.002,
        waiting=lambda _, left: waits.append(left),
    )

    assert result == "done"
    assert len(tries) == 3
    assert len(waits) == 2
    assert all(0 < left <= 5 for left in waits)


async def test_an_error_that_is_not_retryable_is_raised_at_once() -> None:
    tries = 0

    async def broken() -> None:
        nonlocal tries
        tries += 1
        raise ValueError("not a connection")

    with pytest.raises(ValueError, match="not a connection"):
        await retry_within(broken, within=5, retryable=is_redis_unreachable, base=0.001, cap=0.002)
    assert tries == 1


async def test_the_last_try_is_made_at_the_deadline_and_its_error_raised() -> None:
    tries = 0

    async def down() -> None:
        nonlocal tries
        tries += 1
        raise RedisConnectionError(f"refused {tries}")

    with pytest.raises(RedisConnectionError, match="refused"):
        await retry_within(down, within=0.05, retryable=is_redis_unreachable, base=0.01, cap=0.02)
    assert tries >= 3


def test_a_server_that_does_not_answer_is_worded_once() -> None:
    error = OSError("Connect call failed ('127.0.0.1', 1)\nmore detail")

    assert cannot_reach("PostgreSQL", "postgresql://u:***@h/db", error) == (
        "cannot reach PostgreSQL at postgresql://u:***@h/db (OSError: Connect call failed ('127.0.0.1', 1))"
    )
