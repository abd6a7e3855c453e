"""The read-ahead: the jobs claimed together are read in one MULTI/EXEC, and each job's `run_job`
gets its share of the replies instead of reading its job again.

ARQ's `run_job` starts by reading the job's body, counting the try and (with aborts allowed) taking
the job off the abort set, in one transaction of its own. `read_commands` queues exactly those
commands, for every claimed job on one pipeline; a `ReadAhead` then stands in for the pipeline
`run_job` opens, and answers from the batch if `run_job` queued the same commands.
"""

from __future__ import annotations

import contextvars
from types import TracebackType
from typing import Any, cast

from arq.connections import ArqRedis
from arq.constants import abort_jobs_ss, job_key_prefix, retry_key_prefix
from redis.asyncio.client import Pipeline

RETRY_COUNTER_LIFETIME_S = 88400
"""The lifetime ARQ's `run_job` gives a job's retry counter (a day and a bit). The read-ahead must
queue exactly ARQ's commands, with ARQ's arguments, for `run_job` to take the batch's replies."""


def read_commands(pipe: Pipeline | ReadAhead, job_id: str, *, allow_abort: bool) -> None:
    """The commands with which ARQ's `run_job` starts a job: its body, its retry counter, its abort."""
    pipe.get(job_key_prefix + job_id)
    pipe.incr(retry_key_prefix + job_id)
    pipe.expire(retry_key_prefix + job_id, RETRY_COUNTER_LIFETIME_S)
    if allow_abort:
        pipe.zrem(abort_jobs_ss, job_id)


class ReadAhead:
    """Stands in for the pipeline with which ARQ's `run_job` reads its job: when `run_job` queues
    the commands the batch already ran for the job, it gets their replies; any other commands go to
    Redis as they are (so a change in ARQ costs speed, not correctness)."""

    def __init__(self, pool: ArqRedis, job_id: str, replies: list[Any], *, allow_abort: bool) -> None:
        self.pool = pool
        self.replies = replies
        self.queued: list[tuple[str, tuple[Any, ...]]] = []
        read_commands(self, job_id, allow_abort=allow_abort)
        self.expected, self.queued = self.queued, []

    def get(self, *args: Any) -> None:
        self.queued.append(("get", args))

    def incr(self, *args: Any) -> None:
        self.queued.append(("incr", args))

    def expire(self, *args: Any) -> None:
        self.queued.append(("expire", args))

    def zrem(self, *args: Any) -> None:
        self.queued.append(("zrem", args))

    async def execute(self) -> list[Any]:
        """The batch's replies if `run_job` asked what the batch read; else Redis's."""
        if self.queued == self.expected:
            return self.replies
        async with self.pool.pipeline(transaction=True) as pipe:
            for name, args in self.queued:
                getattr(pipe, name)(*args)
            return await pipe.execute()

    async def __aenter__(self) -> ReadAhead:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


CURRENT: contextvars.ContextVar[ReadAhead | None] = contextvars.ContextVar("read_ahead", default=None)
"""The read-ahead of the job whose task runs in this context, until `run_job` takes it."""


class PoolReadingAhead:
    """The pool as `run_job` sees it for its first command: its pipeline is the job's `ReadAhead`."""

    def __init__(self, pool: ArqRedis, read: ReadAhead) -> None:
        self._pool = pool
        self._read = read

    def pipeline(self, transaction: bool = True) -> ReadAhead:
        return self._read

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


def pool_for_job(pool: ArqRedis) -> ArqRedis:
    """`pool`, or, to a job starting with its batch's replies read already, the pool that hands them
    to it (once: the job's later commands go to Redis)."""
    read = CURRENT.get()
    if read is None:
        return pool
    CURRENT.set(None)
    return cast(ArqRedis, PoolReadingAhead(pool, read))
