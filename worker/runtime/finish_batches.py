"""The finish batches: every job finish queued during one turn of the event loop goes to Redis in one
MULTI/EXEC, so that a result waits at most for the next turn, not for its own round trip."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from arq.connections import ArqRedis
from arq.constants import (
    abort_jobs_ss,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.utils import to_ms
from redis.asyncio.client import Pipeline

from worker.jobs.finished import finished_channel


@dataclass(frozen=True)
class Finish:
    """One job's finish: the arguments of ARQ's `Worker.finish_job`, and the job's queue."""

    job_id: str
    queue_name: str
    finish: bool
    result_data: bytes | None
    result_timeout_s: float | None
    keep_result_forever: bool
    incr_score: int | None
    keep_in_progress: float | None

    @property
    def final(self) -> bool:
        """True for a finished job giving up its claim (its result can be written later, if need be)."""
        return self.finish and self.keep_in_progress is None

    def queue_commands(self, tr: Pipeline) -> int:
        """Queue ARQ's finish of the job on `tr` (`Worker.finish_job`'s commands); how many it queued."""
        before = len(tr.command_stack)
        delete_keys = []
        in_progress_key = in_progress_key_prefix + self.job_id
        if self.keep_in_progress is None:
            delete_keys.append(in_progress_key)
        else:
            tr.pexpire(in_progress_key, to_ms(self.keep_in_progress))
        if self.finish:
            if self.result_data:
                expire = None if self.keep_result_forever else self.result_timeout_s
                tr.set(result_key_prefix + self.job_id, self.result_data, px=to_ms(expire))
            delete_keys += [retry_key_prefix + self.job_id, job_key_prefix + self.job_id]
            tr.zrem(abort_jobs_ss, self.job_id)
            tr.zrem(self.queue_name, self.job_id)
            tr.publish(finished_channel(self.queue_name), self.job_id)  # wakes ProvisioningClient.wait_for
        elif self.incr_score:
            tr.zincrby(self.queue_name, self.incr_score, self.job_id)
        if delete_keys:
            tr.delete(*delete_keys)
        return len(tr.command_stack) - before


class FinishBatches:
    """Writes finishes in batches, on one pool. Each job's commands stay together, and each job gets
    its own commands' errors."""

    def __init__(self, pool: ArqRedis) -> None:
        self.pool = pool
        self._pending: list[tuple[Finish, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def write(self, finish: Finish) -> None:
        """Queue a finish; returns once it is written (or raises what writing it raised)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((finish, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all(), name="finish-batches")
        await future

    async def _write_all(self) -> None:
        await asyncio.sleep(0)  # let the jobs finishing in this turn of the loop join the batch
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with self.pool.pipeline(transaction=True) as tr:
                    counts = [finish.queue_commands(tr) for finish, _ in batch]
                    results = await tr.execute(raise_on_error=False)
            except BaseException as error:  # the connection: every job of the batch shares its fate
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                if not isinstance(error, Exception):
                    raise
                continue
            offset = 0
            for (_, future), count in zip(batch, counts, strict=True):
                own = results[offset : offset + count]
                offset += count
                failure = next((r for r in own if isinstance(r, Exception)), None)
                if future.done():
                    continue
                if failure is None:
                    future.set_result(None)
                else:
                    future.set_exception(failure)
