"""Backoff for every retry and reconnect loop, from one jitter source, and the one wording of a server
that does not answer.

The loops: a job's deferred retry (`runtime.job_run`), the worker's Redis connection at start-up and
after an outage (`runtime.outages`), the start-up wait for PostgreSQL (`wiring`), the client's
enqueue (`client`) and its subscription to finished jobs (`waiting`). Jitter spreads the retries of
many jobs and workers apart, so that they do not all land on a server the moment it comes back.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker.jobs.errors import first_line

T = TypeVar("T")

_jitter = random.Random()  # noqa: S311 - spreading retries out, not cryptography


def backoff_delay(attempt: int, *, base: float, cap: float) -> float:
    """Seconds to wait after failed attempt `attempt` (1, 2, …): `base` doubling up to `cap`, jittered
    to between half of it and all of it."""
    ceiling = min(cap, base * 2.0 ** max(attempt - 1, 0))
    return ceiling * _jitter.uniform(0.5, 1.0)


async def retry_within(
    attempt: Callable[[], Awaitable[T]],
    *,
    within: float,
    retryable: Callable[[Exception], bool],
    base: float,
    cap: float,
    waiting: Callable[[Exception, float], None] | None = None,
) -> T:
    """`attempt()`'s result, tried again after each `retryable` error with `backoff_delay` for up to
    `within` seconds; the last try is made at that deadline.

    An error that is not retryable, or that the last try raised, is raised as it is.
    `waiting(error, seconds_left)` is called before each wait (for a log line, or to note the failure).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    failures = 0
    while True:
        try:
            return await attempt()
        except Exception as error:
            left = deadline - loop.time()
            if left <= 0 or not retryable(error):
                raise
            failures += 1
            if waiting is not None:
                waiting(error, left)
            await asyncio.sleep(min(backoff_delay(failures, base=base, cap=cap), left))


REDIS_UNREACHABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    TimeoutError,
    OSError,
)
"""Errors that mean Redis cannot be reached right now (redis-py's and the socket's own)."""


def is_redis_unreachable(error: BaseException) -> bool:
    """True for a lost or refused Redis connection, however the layers below spell it."""
    if isinstance(error, REDIS_UNREACHABLE):
        return True
    # uvloop refuses to write to a transport the peer has closed with a RuntimeError, where
    # asyncio's own loop raises ConnectionError; redis-py passes either on as it is.
    return isinstance(error, RuntimeError) and "handler is closed" in str(error)


def cannot_reach(server: str, where: str, error: BaseException) -> str:
    """The one wording of a server that does not answer: "cannot reach PostgreSQL at <url> (<error>)"."""
    return f"cannot reach {server} at {where} ({type(error).__name__}: {first_line(error)})"
