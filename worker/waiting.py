"""Waiting for jobs' results without polling, on the worker's finish announcements.

`FinishedJobs` keeps one subscription to a queue's channel (`worker.jobs.finished`) per client and
wakes the callers waiting for an announced id, which then read the result. A message can be missed
(the subscription reconnecting, a result written by an older worker), so waiters also read their
results every `FALLBACK_INTERVAL` seconds: a missed message costs latency, never a result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from arq.connections import ArqRedis
from arq.constants import result_key_prefix
from arq.jobs import JobResult, deserialize_result

from worker.jobs.finished import finished_channel
from worker.retrying import backoff_delay

logger = logging.getLogger(__name__)

FALLBACK_INTERVAL = 0.25
"""Seconds between a waiter's own reads of its results, should an announcement not reach it."""

RESUBSCRIBE_MAX_DELAY = 5.0
"""The longest wait before subscribing again after a lost subscription (the reads cover the gap)."""


class FinishedJobs:
    """One subscription to a queue's finish announcements, shared by every waiter of a client."""

    def __init__(
        self, redis: ArqRedis, queue_name: str, *, deserializer: Callable[[bytes], dict[str, Any]]
    ) -> None:
        self.redis = redis
        self.channel = finished_channel(queue_name)
        self._deserializer = deserializer
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def wait(self, job_ids: Sequence[str], *, within: float) -> dict[str, JobResult]:
        """The results of those of `job_ids` that finish within `within` seconds (or had already)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        pending = list(dict.fromkeys(job_ids))
        found: dict[str, JobResult] = {}
        woken = asyncio.Event()
        for job_id in pending:
            self._waiters.setdefault(job_id, set()).add(woken)
        try:
            await self._listen(deadline)
            while True:
                woken.clear()  # before reading: an announcement from now on wakes the next wait
                pending = await self._read(pending, found)
                remaining = deadline - loop.time()
                if not pending or remaining <= 0:
                    return found
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(remaining, FALLBACK_INTERVAL)):
                        await woken.wait()
        finally:
            for job_id in job_ids:
                events = self._waiters.get(job_id)
                if events is not None:
                    events.discard(woken)
                    if not events:
                        del self._waiters[job_id]

    async def _read(self, pending: list[str], found: dict[str, JobResult]) -> list[str]:
        """Move the results that exist into `found`; the ids still without one."""
        raw = await self.redis.mget([result_key_prefix + job_id for job_id in pending])
        still: list[str] = []
        for job_id, data in zip(pending, raw, strict=True):
            if data is None:
                still.append(job_id)
            else:
                found[job_id] = deserialize_result(data, deserializer=self._deserializer)
        return still

    async def _listen(self, deadline: float) -> None:
        """Start the subscription if it is not running; wait (until `deadline`) for it to be in place,
        so that no announcement sent after the caller's first read can be missed."""
        if self._listener is None or self._listener.done():
            self._subscribed.clear()
            self._listener = asyncio.create_task(self._run(), name="finished-jobs")
        if not self._subscribed.is_set():
            remaining = deadline - asyncio.get_running_loop().time()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(remaining, 0.0)):
                    await self._subscribed.wait()  # else the fallback reads carry the wait

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    self._subscribed.set()
                    failures = 0
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._wake(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a lost connection: the fallback reads cover the gap
                self._subscribed.clear()
                failures += 1
                delay = backoff_delay(failures, base=FALLBACK_INTERVAL, cap=RESUBSCRIBE_MAX_DELAY)
                logger.warning(
                    "lost the subscription to %s (%s); resubscribing in %.2gs",
                    self.channel,
                    type(error).__name__,
                    delay,
                )
                await asyncio.sleep(delay)

    def _wake(self, data: bytes | str) -> None:
        job_id = data.decode() if isinstance(data, bytes) else data
        for event in self._waiters.get(job_id, ()):
            event.set()

    async def aclose(self) -> None:
        """Stop the subscription."""
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
