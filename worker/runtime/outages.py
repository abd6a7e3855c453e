"""Riding out Redis outages in the same process.

Stock ARQ lets a lost Redis connection escape its poll loop, and the process exits; jobs enqueued
afterwards wait for a supervisor. Here the poll loop survives: on a lost connection the worker logs
one warning, sets `provisioning_redis_up` to 0, and reconnects with capped, jittered backoff while
running jobs carry on. Polling resumes by itself. Only an outage longer than REDIS_MAX_OUTAGE (also
at start-up) ends the process, with status 1, for a supervisor to take over.

What could not be written to Redis meanwhile:
- a finished job's result and clean-up is written after reconnecting, unless the job has a result
  already (another worker ran it again and finished it);
- anything whose replay is not idempotent (the retry counter's INCR when a job starts, the ZINCRBY
  that defers a retried job) is not replayed: the job stays claimed until its in-progress key
  expires (JOB_TIMEOUT + 10 s), then runs again, which ordering makes harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from arq.connections import ArqRedis
from arq.constants import result_key_prefix

from worker.retrying import cannot_reach, is_redis_unreachable, retry_within
from worker.runtime import metrics
from worker.runtime.finish_batches import Finish, FinishBatches

logger = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_MAX_OUTAGE = 300.0
"""REDIS_MAX_OUTAGE's default, for a worker built without our settings (ARQ's own test suite)."""
FIRST_RECONNECT = 0.2
"""Seconds before the first reconnection attempt (then doubling, jittered)."""
RECONNECT_CAP = 2.0
"""Seconds between reconnection attempts at most: polling resumes at most this long after Redis is back."""


class RedisOutageTooLong(SystemExit):
    """Redis stayed unreachable for longer than REDIS_MAX_OUTAGE: exit 1 for a supervisor."""


class Outages:
    """One worker's outages: reconnecting, and the finished jobs whose results wait for Redis."""

    def __init__(self, *, max_outage: float, where: str) -> None:
        self.max_outage = max_outage
        self.where = where
        self.unwritten: dict[str, Finish] = {}
        """Finishes of jobs that finished while Redis was unreachable, by job id."""

    async def connect(self, open_pool: Callable[[], Awaitable[ArqRedis]]) -> ArqRedis:
        """`open_pool()`, retried for up to REDIS_MAX_OUTAGE (stock ARQ gives up after its 5 tries)."""
        started = asyncio.get_running_loop().time()

        def waiting(error: Exception, left: float) -> None:
            logger.warning(
                "Redis at %s is not reachable yet (%s); retrying for up to %.0fs",
                self.where,
                type(error).__name__,
                left,
            )

        try:
            return await self._retry(open_pool, waiting)
        except Exception as error:
            if not is_redis_unreachable(error):
                raise
            waited = asyncio.get_running_loop().time() - started
            raise RedisOutageTooLong(
                f"{cannot_reach('Redis', self.where, error)} for {waited:.0f}s "
                f"(REDIS_MAX_OUTAGE is {self.max_outage:g}s): start it, or fix REDIS_URL"
            ) from None

    async def ride_out(self, pool: ArqRedis, error: Exception, finishes: FinishBatches) -> None:
        """Wait for Redis to answer again, then write the results that waited for it; raise
        `RedisOutageTooLong` after REDIS_MAX_OUTAGE."""
        started = asyncio.get_running_loop().time()
        # Drop the idle pooled connections: each would fail once more before noticing Redis came
        # back. Those in use belong to running jobs, which find out for themselves.
        await pool.connection_pool.disconnect(inuse_connections=False)
        lost = False

        def waiting(_: Exception, left: float) -> None:
            nonlocal lost
            if not lost:
                lost = True
                metrics.REDIS_UP.set(0)
                logger.warning(
                    "lost Redis at %s (%s: %s); running jobs carry on, polling resumes when it is back "
                    "(exiting after REDIS_MAX_OUTAGE=%gs)",
                    self.where,
                    type(error).__name__,
                    error,
                    self.max_outage,
                )

        try:
            await self._retry(pool.ping, waiting)
        except Exception as failure:
            if not is_redis_unreachable(failure):
                raise
            raise RedisOutageTooLong(
                f"Redis at {self.where} unreachable for {asyncio.get_running_loop().time() - started:.0f}s, "
                f"longer than REDIS_MAX_OUTAGE ({self.max_outage:g}s): exiting for a supervisor "
                "to restart the worker"
            ) from None
        if not lost:
            # An error from earlier (a job that lost Redis while starting), reported by its task now.
            logger.info(
                "a job lost Redis earlier (%s); it runs again once its claim expires", type(error).__name__
            )
            return
        metrics.REDIS_UP.set(1)
        elapsed = asyncio.get_running_loop().time() - started
        logger.warning("Redis at %s is back after %.1fs; resuming", self.where, elapsed)
        await self.write_unwritten(pool, finishes)

    def finish_lost(self, finish: Finish) -> None:
        """Note a finish Redis could not take: a finished job's result waits for Redis to come back."""
        if finish.final:
            self.unwritten[finish.job_id] = finish
            logger.warning("job %s finished while Redis was unreachable; its result waits", finish.job_id)
        else:
            logger.warning(
                "job %s could not be put back while Redis was unreachable; it runs again once its "
                "in-progress key expires",
                finish.job_id,
            )

    async def write_unwritten(self, pool: ArqRedis, finishes: FinishBatches) -> None:
        """Write the results that waited for Redis, unless another worker finished the job meanwhile."""
        for job_id, finish in list(self.unwritten.items()):
            if not await pool.exists(result_key_prefix + job_id):  # else run again and finished elsewhere
                await finishes.write(finish)
            self.unwritten.pop(job_id)

    async def _retry(
        self, attempt: Callable[[], Awaitable[T]], waiting: Callable[[Exception, float], None]
    ) -> T:
        return await retry_within(
            attempt,
            within=self.max_outage,
            retryable=is_redis_unreachable,
            base=FIRST_RECONNECT,
            cap=RECONNECT_CAP,
            waiting=waiting,
        )
