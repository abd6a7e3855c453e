"""ARQ's `Worker`, made to ride out Redis outages in the same process.

Stock ARQ lets a lost Redis connection escape its poll loop, and the process exits; jobs enqueued
afterwards wait for a supervisor. Here the poll loop survives: on a lost connection the worker logs
one warning, sets `provisioning_redis_up` to 0, and reconnects with bounded, jittered backoff
while running jobs carry on. Polling resumes by itself. Only an outage longer than
REDIS_MAX_OUTAGE (also at start-up) ends the process, with status 1, for a supervisor to take over.

What could not be written to Redis meanwhile:
- a finished job's result and clean-up (`finish=True`) is written after reconnecting, unless the
  job has a result already (another worker ran it again and finished it);
- anything whose replay is not idempotent (the retry counter's INCR when a job starts, the
  ZINCRBY that defers a retried job) is not replayed: the job stays claimed until its in-progress
  key expires (JOB_TIMEOUT + 10 s), then runs again, which ordering makes harmless.

Jobs are claimed, read and finished in batches: one Lua script claims up to the free slots' worth
of due jobs per poll, one MULTI/EXEC reads all their bodies and retry counters (the commands ARQ's
`run_job` sends per job, handed to it through `_ReadAhead`), and finishes queued in one turn of the
event loop share one MULTI/EXEC (`FinishBatches`).

Everything else is ARQ's own code path and semantics.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
from collections.abc import Callable
from functools import partial
from types import TracebackType
from typing import Any, cast

from arq.connections import ArqRedis, RedisSettings, log_redis_info
from arq.constants import (
    abort_jobs_ss,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.utils import poll, timestamp_ms, to_ms
from arq.worker import Worker
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

from worker.jobs.finished import finished_channel
from worker.runtime import metrics
from worker.runtime.redis_connection import open_redis
from worker.runtime.retries import is_redis_unreachable

logger = logging.getLogger(__name__)

DEFAULT_MAX_OUTAGE = 300.0
RECONNECT_CAP = 2.0
"""Seconds between reconnection attempts at most: polling resumes at most this long after Redis is back."""
_jitter = random.Random()  # noqa: S311 - spreading reconnects out, not cryptography


LARGE_JOB_BYTES = 16 * 1024
"""A job body at least this big (a bulk batch, not a single-user command) is a large job."""

# KEYS[1]: the queue. ARGV: now (ms), in-progress lifetime (ms), most jobs to claim, the in-progress
# key prefix, the job key prefix, LARGE_JOB_BYTES, most large jobs to claim, then the job ids in
# queue order. Returns the claimed ids, their scores and 1 for a large job (else 0), in turn.
CLAIM_SCRIPT = """
local claimed = {}
local room = tonumber(ARGV[3])
local large_room = tonumber(ARGV[7])
for i = 8, #ARGV do
    if room <= 0 then break end
    local job_id = ARGV[i]
    local in_progress = ARGV[4] .. job_id
    if redis.call('EXISTS', in_progress) == 0 then
        local score = redis.call('ZSCORE', KEYS[1], job_id)
        if score and tonumber(score) <= tonumber(ARGV[1]) then
            local large = 0
            if redis.call('STRLEN', ARGV[5] .. job_id) >= tonumber(ARGV[6]) then large = 1 end
            if large == 0 or large_room > 0 then
                redis.call('PSETEX', in_progress, ARGV[2], '1')
                claimed[#claimed + 1] = job_id
                claimed[#claimed + 1] = score
                claimed[#claimed + 1] = large
                room = room - 1
                large_room = large_room - large
            end
        end
    end
end
return claimed
"""


_READ_AHEAD: contextvars.ContextVar[_ReadAhead | None] = contextvars.ContextVar("read_ahead", default=None)


def _read_commands(pipe: Pipeline | _ReadAhead, job_id: str, *, allow_abort: bool) -> None:
    """The commands with which ARQ's `run_job` starts a job: its body, its retry counter, its abort."""
    pipe.get(job_key_prefix + job_id)
    pipe.incr(retry_key_prefix + job_id)
    pipe.expire(retry_key_prefix + job_id, 88400)
    if allow_abort:
        pipe.zrem(abort_jobs_ss, job_id)


class _ReadAhead:
    """Stands in for the pipeline with which ARQ's `run_job` reads its job: when `run_job` queues
    the commands `start_jobs` already ran for the job in the batch, it gets their replies; any other
    commands go to Redis as they are (so a change in ARQ costs speed, not correctness)."""

    def __init__(self, pool: ArqRedis, job_id: str, replies: list[Any], *, allow_abort: bool) -> None:
        self.pool = pool
        self.replies = replies
        self.queued: list[tuple[str, tuple[Any, ...]]] = []
        self.expected: list[tuple[str, tuple[Any, ...]]] = []
        _read_commands(self, job_id, allow_abort=allow_abort)
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
        if self.queued == self.expected:
            return self.replies
        async with self.pool.pipeline(transaction=True) as pipe:
            for name, args in self.queued:
                getattr(pipe, name)(*args)
            return await pipe.execute()

    async def __aenter__(self) -> _ReadAhead:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


class _PoolReadingAhead:
    """The pool as `run_job` sees it for its first command: its pipeline is the job's `_ReadAhead`."""

    def __init__(self, pool: ArqRedis, read: _ReadAhead) -> None:
        self._pool = pool
        self._read = read

    def pipeline(self, transaction: bool = True) -> _ReadAhead:
        return self._read

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


class RedisOutageTooLong(SystemExit):
    """Redis stayed unreachable for longer than REDIS_MAX_OUTAGE: exit 1 for a supervisor."""


def _finish_commands(
    tr: Pipeline,
    *,
    job_id: str,
    queue_name: str,
    finish: bool,
    result_data: bytes | None,
    result_timeout_s: float | None,
    keep_result_forever: bool,
    incr_score: int | None,
    keep_in_progress: float | None,
) -> int:
    """Queue ARQ's finish of one job on `tr` (`Worker.finish_job`'s commands); how many it queued."""
    before = len(tr.command_stack)
    delete_keys = []
    in_progress_key = in_progress_key_prefix + job_id
    if keep_in_progress is None:
        delete_keys.append(in_progress_key)
    else:
        tr.pexpire(in_progress_key, to_ms(keep_in_progress))
    if finish:
        if result_data:
            expire = None if keep_result_forever else result_timeout_s
            tr.set(result_key_prefix + job_id, result_data, px=to_ms(expire))
        delete_keys += [retry_key_prefix + job_id, job_key_prefix + job_id]
        tr.zrem(abort_jobs_ss, job_id)
        tr.zrem(queue_name, job_id)
        tr.publish(finished_channel(queue_name), job_id)  # wakes ProvisioningClient.wait_for
    elif incr_score:
        tr.zincrby(queue_name, incr_score, job_id)
    if delete_keys:
        tr.delete(*delete_keys)
    return len(tr.command_stack) - before


class FinishBatches:
    """Writes job finishes in batches: every finish queued during one turn of the event loop goes
    to Redis in one MULTI/EXEC, so that a result waits at most for the next turn, not for its own
    round trip. Each job's commands stay together, and each job gets its own commands' errors."""

    def __init__(self, pool: ArqRedis) -> None:
        self.pool = pool
        self._pending: list[tuple[Callable[[Pipeline], int], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def write(self, commands: Callable[[Pipeline], int]) -> None:
        """Queue a job's commands; returns once they are written (or raises what writing them raised)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((commands, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all(), name="finish-batches")
        await future

    async def _write_all(self) -> None:
        await asyncio.sleep(0)  # let the jobs finishing in this turn of the loop join the batch
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with self.pool.pipeline(transaction=True) as tr:
                    counts = [add(tr) for add, _ in batch]
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


class ProvisioningWorker(Worker):
    """ARQ's worker, with a poll loop that survives Redis outages (see the module's docstring).

    It adds no constructor arguments: ARQ's command line passes a class only the settings that
    `Worker.__init__` names. REDIS_MAX_OUTAGE is read from the settings in `ctx`.
    """

    _unwritten: dict[str, tuple[bytes | None, float | None, bool]]

    @property
    def pool(self) -> ArqRedis:
        """ARQ's pool; to a job starting with its batch's replies read already, the pool that hands
        them to it (once: the job's later commands go to Redis)."""
        pool = cast(ArqRedis, self._pool)
        read = _READ_AHEAD.get()
        if read is None:
            return pool
        _READ_AHEAD.set(None)
        return cast(ArqRedis, _PoolReadingAhead(pool, read))

    @property
    def max_outage(self) -> float:
        """REDIS_MAX_OUTAGE: seconds Redis may stay unreachable before the worker exits."""
        return float(getattr(self.ctx.get("settings"), "redis_max_outage", DEFAULT_MAX_OUTAGE))

    @property
    def _redis_url(self) -> str:
        return str(getattr(self.ctx.get("settings"), "redis_url_masked", "Redis"))

    def _finishes(self) -> FinishBatches:
        """The batcher of job finishes, on the current pool."""
        batches = getattr(self, "_finish_batches", None)
        if batches is None or batches.pool is not self.pool:
            batches = FinishBatches(self.pool)
            self._finish_batches = batches
        return batches

    def _waiting_results(self) -> dict[str, tuple[bytes | None, float | None, bool]]:
        """Results of finished jobs that wait for Redis to come back, by job id."""
        if not hasattr(self, "_unwritten"):
            self._unwritten = {}
        return self._unwritten

    async def main(self) -> None:
        """ARQ's main loop, with outages ridden out around each poll."""
        if self._pool is None:
            self._pool = await self._connect()
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
                await self._ride_out(error)

    async def _connect(self) -> ArqRedis:
        """ARQ's pool (or Sentinel's), retried with backoff for up to REDIS_MAX_OUTAGE; stock ARQ gives
        up after its 5 tries."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        delay = 0.25
        while True:
            try:
                return await open_redis(
                    self.redis_settings or RedisSettings(),
                    job_deserializer=self.job_deserializer,
                    job_serializer=self.job_serializer,
                    default_queue_name=self.queue_name,
                    expires_extra_ms=self.expires_extra_ms,
                    # Start ARQ's own count at its end: this loop does the retrying.
                    retry=self.redis_settings.conn_retries if self.redis_settings else 0,
                )
            except Exception as error:
                if not is_redis_unreachable(error):
                    raise
                waited = loop.time() - started
                if waited + delay > self.max_outage:
                    raise RedisOutageTooLong(
                        f"cannot reach Redis at {self._redis_url} for {waited:.0f}s (REDIS_MAX_OUTAGE is "
                        f"{self.max_outage:g}s; {type(error).__name__}): start it, or fix REDIS_URL"
                    ) from None
                logger.warning(
                    "Redis at %s is not reachable yet (%s); retrying for up to %.0fs",
                    self._redis_url,
                    type(error).__name__,
                    self.max_outage - waited,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _ride_out(self, error: BaseException) -> None:
        """Wait for Redis to answer again, with capped, jittered backoff; exit after REDIS_MAX_OUTAGE."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        # Drop the idle pooled connections: each would fail once more before noticing Redis came
        # back. Those in use belong to running jobs, which find out for themselves.
        await self.pool.connection_pool.disconnect(inuse_connections=False)
        if await self._answers():
            # An error from earlier (a job that lost Redis while starting), reported by its task now.
            logger.info(
                "a job lost Redis earlier (%s); it runs again once its claim expires", type(error).__name__
            )
            return
        metrics.REDIS_UP.set(0)
        logger.warning(
            "lost Redis at %s (%s: %s); running jobs carry on, polling resumes when it is back "
            "(exiting after REDIS_MAX_OUTAGE=%gs)",
            self._redis_url,
            type(error).__name__,
            error,
            self.max_outage,
        )
        attempt = 0
        while True:
            attempt += 1
            await asyncio.sleep(min(RECONNECT_CAP, 0.1 * 2**attempt) * _jitter.uniform(0.5, 1.0))
            if await self._answers():
                break
            if loop.time() - started > self.max_outage:
                raise RedisOutageTooLong(
                    f"Redis at {self._redis_url} unreachable for {loop.time() - started:.0f}s, "
                    f"longer than REDIS_MAX_OUTAGE ({self.max_outage:g}s): exiting for a supervisor "
                    "to restart the worker"
                )
        metrics.REDIS_UP.set(1)
        logger.warning("Redis at %s is back after %.1fs; resuming", self._redis_url, loop.time() - started)
        await self._write_unwritten()

    async def _answers(self) -> bool:
        """True if Redis answers a PING now."""
        try:
            await self.pool.ping()
        except Exception as error:
            if not is_redis_unreachable(error):
                raise
            return False
        return True

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Claim up to the free slots' worth of `job_ids` in one atomic script, read the claimed jobs
        in one transaction, then start them.

        ARQ claims each job with four sequential round trips (WATCH, EXISTS, ZSCORE, MULTI/PSETEX/
        EXEC) and reads it with a fifth; the script makes ARQ's checks for every id at once (not in
        progress, still queued, not deferred to the future), and the read is ARQ's, for all of them.
        """
        free = self.max_jobs - self.job_counter
        if free <= 0 or not job_ids:
            return
        large_running = self._large_running()
        claimed = await self._claim_script(
            keys=[self.queue_name],
            args=[
                timestamp_ms(),
                int(self.in_progress_timeout_s * 1000),
                free,
                in_progress_key_prefix,
                job_key_prefix,
                LARGE_JOB_BYTES,
                max(0, self.large_job_limit - len(large_running)),
                *job_ids,
            ],
        )
        if not claimed:
            return
        jobs: list[tuple[str, int]] = []
        for position in range(0, len(claimed), 3):
            job_id = claimed[position].decode()
            jobs.append((job_id, int(claimed[position + 1])))
            if claimed[position + 2]:
                large_running.add(job_id)
        allow_abort = self.allow_abort_jobs
        async with self.pool.pipeline(transaction=True) as pipe:
            for job_id, _ in jobs:
                _read_commands(pipe, job_id, allow_abort=allow_abort)
            replies = await pipe.execute()
        per_job = len(replies) // len(jobs)
        for index, (job_id, score) in enumerate(jobs):
            await self.sem.acquire()  # never waits: at most `free` jobs were claimed
            self.job_counter += 1
            context = contextvars.copy_context()
            read = _ReadAhead(
                self.pool, job_id, replies[index * per_job : (index + 1) * per_job], allow_abort=allow_abort
            )
            context.run(_READ_AHEAD.set, read)
            task = self.loop.create_task(self.run_job(job_id, score), context=context)
            task.add_done_callback(partial(self._job_done, job_id))
            self.tasks[job_id] = task

    def _job_done(self, job_id: str, _: asyncio.Task[None]) -> None:
        self._large_running().discard(job_id)
        self._release_sem_dec_counter_on_complete()

    @property
    def large_job_limit(self) -> int:
        """Large jobs (bulk batches) one worker holds at once: twice BULK_CONCURRENCY, so the next
        batches are read while the others write. More would only wait in memory for a bulk slot,
        where other workers could run them."""
        settings = self.ctx.get("settings")
        return 2 * int(settings.bulk_concurrency) if settings is not None else self.max_jobs

    def _large_running(self) -> set[str]:
        """Ids of the large jobs this worker claimed and has not finished."""
        if not hasattr(self, "_large"):
            self._large: set[str] = set()
        return self._large

    @property
    def _claim_script(self) -> AsyncScript:
        """CLAIM_SCRIPT, registered once per connection pool (EVALSHA, loaded again when missing)."""
        script = getattr(self, "_claim_script_for", None)
        if script is None or script[0] is not self.pool:
            script = (self.pool, self.pool.register_script(CLAIM_SCRIPT))
            self._claim_script_for = script
        return script[1]

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
        try:
            await self._write_finish(
                job_id,
                finish,
                result_data,
                result_timeout_s,
                keep_result_forever,
                incr_score,
                keep_in_progress,
            )
        except Exception as error:
            if not is_redis_unreachable(error):
                raise
            if finish and keep_in_progress is None:
                self._waiting_results()[job_id] = (result_data, result_timeout_s, keep_result_forever)
                logger.warning("job %s finished while Redis was unreachable; its result waits", job_id)
            else:
                logger.warning(
                    "job %s could not be put back while Redis was unreachable; it runs again once its "
                    "in-progress key expires",
                    job_id,
                )

    async def _write_unwritten(self) -> None:
        """Write the results that waited for Redis, unless another worker finished the job meanwhile."""
        waiting = self._waiting_results()
        for job_id, (result_data, timeout_s, forever) in list(waiting.items()):
            if await self.pool.exists(result_key_prefix + job_id):
                waiting.pop(job_id)  # run again and finished elsewhere: that result stands
                continue
            await self._write_finish(job_id, True, result_data, timeout_s, forever, None, None)
            waiting.pop(job_id)

    async def _write_finish(
        self,
        job_id: str,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
        keep_in_progress: float | None,
    ) -> None:
        """Write one job's finish (ARQ's commands) with the current batch; raises what writing raised."""
        await self._finishes().write(
            partial(
                _finish_commands,
                job_id=job_id,
                queue_name=self.queue_name,
                finish=finish,
                result_data=result_data,
                result_timeout_s=result_timeout_s,
                keep_result_forever=keep_result_forever,
                incr_score=incr_score,
                keep_in_progress=keep_in_progress,
            )
        )

    async def close(self) -> None:
        """ARQ's close, writing waiting results first; Redis being down does not skip on_shutdown."""
        try:
            if self._pool is not None and self._waiting_results():
                await asyncio.gather(*self.tasks.values(), return_exceptions=True)
                await self._write_unwritten()
            await super().close()
        except Exception as error:
            if not is_redis_unreachable(error):
                raise
            logger.warning(
                "Redis unreachable while closing (%s); %d result(s) not written, their jobs run again",
                type(error).__name__,
                len(self._waiting_results()),
            )
            if self.on_shutdown:
                await self.on_shutdown(self.ctx)
            self._pool = None
