"""`ProvisioningWorker`: ARQ's `Worker`, batching its Redis round trips and riding out Redis outages.

Each idea has a module of its own:
- `outages`: a lost Redis connection is waited out in the same process (REDIS_MAX_OUTAGE);
- `claim`: one Lua script (`claim.lua`) claims up to the free slots' worth of due jobs per poll;
- `read_ahead`: one MULTI/EXEC reads all the claimed jobs, and ARQ's `run_job` takes its share;
- `finish_batches`: the finishes queued in one turn of the event loop share one MULTI/EXEC.

Everything else is ARQ's own code path and semantics.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
from functools import partial
from typing import Any, cast

from arq.connections import ArqRedis, RedisSettings, log_redis_info
from arq.utils import poll, timestamp_ms
from arq.worker import Worker

from worker.redis_connection import open_redis
from worker.retrying import is_redis_unreachable
from worker.runtime import metrics, read_ahead
from worker.runtime.claim import Claim
from worker.runtime.finish_batches import Finish, FinishBatches
from worker.runtime.outages import DEFAULT_MAX_OUTAGE, Outages
from worker.runtime.read_ahead import ReadAhead, pool_for_job, read_commands
from worker.settings import Settings

logger = logging.getLogger(__name__)


class ProvisioningWorker(Worker):
    """ARQ's worker, claiming, reading and finishing jobs in batches, and riding out Redis outages."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings: Settings | None = self.ctx.get("settings")
        self.outages = Outages(
            max_outage=settings.redis_max_outage if settings else DEFAULT_MAX_OUTAGE,
            where=settings.redis_url_masked if settings else "Redis",
        )
        self.large_job_limit = 2 * settings.bulk_concurrency if settings else self.max_jobs
        """Large jobs (bulk batches) held at once: twice BULK_CONCURRENCY, so the next batches are
        read while the others write. More would only wait in memory for a bulk slot, where other
        workers could run them."""
        self.hashing_job_limit = settings.hashing_job_limit if settings else self.max_jobs
        """Sealed-password jobs held at once (HASH_JOBS): enough to keep the hashing threads busy;
        the claim takes the cheap jobs queued behind the others (docs/performance.md)."""
        self.claim = Claim()
        self._large_running: set[str] = set()
        self._hashing_running: set[str] = set()
        self._finishes: FinishBatches | None = None

    # ARQ's command line passes a worker class only the settings its signature names
    # (`arq.worker.get_kwargs`): show it `Worker.__init__`'s.
    __init__.__signature__ = inspect.signature(Worker.__init__)  # type: ignore[attr-defined]

    @property
    def pool(self) -> ArqRedis:
        """ARQ's pool; to a job starting with its batch read already, the pool that hands it the replies."""
        return pool_for_job(cast(ArqRedis, self._pool))

    async def main(self) -> None:
        """ARQ's main loop, with outages ridden out around each poll."""
        if self._pool is None:
            self._pool = await self.outages.connect(
                partial(
                    open_redis,
                    self.redis_settings or RedisSettings(),
                    job_deserializer=self.job_deserializer,
                    job_serializer=self.job_serializer,
                    default_queue_name=self.queue_name,
                    expires_extra_ms=self.expires_extra_ms,
                    # Start ARQ's own count at its end: `outages` does the retrying.
                    retry=self.redis_settings.conn_retries if self.redis_settings else 0,
                )
            )
        logger.info("Starting worker for %d functions: %s", len(self.functions), ", ".join(self.functions))
        await log_redis_info(self.pool, logger.info)
        self.ctx["redis"] = self.pool
        if self.on_startup:
            await self.on_startup(self.ctx)
        metrics.REDIS_UP.set(1)

        async for _ in poll(self.poll_delay_s):
            try:
                await self._poll_iteration()
                if self.burst:
                    if 0 <= self.max_burst_jobs <= self._jobs_started():
                        await asyncio.gather(*self.tasks.values())
                        return
                    if await self.pool.zcard(self.queue_name) == 0:
                        await asyncio.gather(*self.tasks.values())
                        return
            except Exception as error:
                if not is_redis_unreachable(error):
                    raise
                await self.outages.ride_out(self.pool, error, self._finish_batches())

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Claim up to the free slots' worth of `job_ids` in one script, read the claimed jobs in one
        transaction, then start them as ARQ does."""
        free = self.max_jobs - self.job_counter
        if free <= 0 or not job_ids:
            return
        jobs = await self.claim(
            self.pool,
            queue=self.queue_name,
            job_ids=job_ids,
            now_ms=timestamp_ms(),
            lifetime_ms=int(self.in_progress_timeout_s * 1000),
            room=free,
            large_room=max(0, self.large_job_limit - len(self._large_running)),
            hashing_room=max(0, self.hashing_job_limit - len(self._hashing_running)),
        )
        if not jobs:
            return
        self._large_running.update(job.job_id for job in jobs if job.large)
        self._hashing_running.update(job.job_id for job in jobs if job.hashing)
        allow_abort = self.allow_abort_jobs
        async with self.pool.pipeline(transaction=True) as pipe:
            for job in jobs:
                read_commands(pipe, job.job_id, allow_abort=allow_abort)
            replies = await pipe.execute()
        per_job = len(replies) // len(jobs)
        for index, job in enumerate(jobs):
            await self.sem.acquire()  # never waits: at most `free` jobs were claimed
            self.job_counter += 1
            own = replies[index * per_job : (index + 1) * per_job]
            context = contextvars.copy_context()
            context.run(
                read_ahead.CURRENT.set, ReadAhead(self.pool, job.job_id, own, allow_abort=allow_abort)
            )
            task = self.loop.create_task(self.run_job(job.job_id, job.score), context=context)
            task.add_done_callback(partial(self._job_done, job.job_id))
            self.tasks[job.job_id] = task

    def _job_done(self, job_id: str, _: asyncio.Task[None]) -> None:
        self._large_running.discard(job_id)
        self._hashing_running.discard(job_id)
        self._release_sem_dec_counter_on_complete()

    async def finish_job(
        self,
        job_id: str,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
        keep_in_progress: float | None,
    ) -> None:
        """ARQ's finish, written with the other jobs finishing at the same moment in one transaction;
        a finished job's result that Redis could not take waits for its return."""
        done = Finish(
            job_id,
            self.queue_name,
            finish,
            result_data,
            result_timeout_s,
            keep_result_forever,
            incr_score,
            keep_in_progress,
        )
        try:
            await self._finish_batches().write(done)
        except Exception as error:
            if not is_redis_unreachable(error):
                raise
            self.outages.finish_lost(done)

    def _finish_batches(self) -> FinishBatches:
        """The batches of job finishes, on the current pool."""
        if self._finishes is None or self._finishes.pool is not self.pool:
            self._finishes = FinishBatches(self.pool)
        return self._finishes

    async def close(self) -> None:
        """ARQ's close, writing waiting results first; Redis being down does not skip on_shutdown."""
        try:
            if self._pool is not None and self.outages.unwritten:
                await asyncio.gather(*self.tasks.values(), return_exceptions=True)
                await self.outages.write_unwritten(self.pool, self._finish_batches())
            await super().close()
        except Exception as error:
            if not is_redis_unreachable(error):
                raise
            logger.warning(
                "Redis unreachable while closing (%s); %d result(s) not written, their jobs run again",
                type(error).__name__,
                len(self.outages.unwritten),
            )
            if self.on_shutdown:
                await self.on_shutdown(self.ctx)
            self._pool = None
