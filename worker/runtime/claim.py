"""The claim: one Lua script takes up to the free slots' worth of due jobs in one round trip.

ARQ claims each job with four sequential round trips (WATCH, EXISTS, ZSCORE, MULTI/PSETEX/EXEC);
`claim.lua` makes ARQ's checks for every id at once (not in progress, still queued, not deferred to the
future) and sets the in-progress keys of those it takes. Large jobs (bulk batches) are taken only up
to their own room, so that a worker does not hoard batches that other workers could run.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix
from redis.commands.core import AsyncScript

LARGE_JOB_BYTES = 16 * 1024
"""A job body at least this big (a bulk batch, not a single-user command) is a large job."""


@dataclass(frozen=True)
class ClaimedJob:
    """A job the claim took: ARQ's `run_job` needs its id and score."""

    job_id: str
    score: int
    large: bool


class Claim:
    """The claim script (read from `claim.lua` when the worker is built), registered once per pool:
    Redis runs it by its SHA and loads it again when missing."""

    def __init__(self) -> None:
        self.script = files("worker.runtime").joinpath("claim.lua").read_text(encoding="utf-8")
        self._registered: tuple[ArqRedis, AsyncScript] | None = None

    async def __call__(
        self,
        pool: ArqRedis,
        *,
        queue: str,
        job_ids: list[bytes] | list[str],
        now_ms: int,
        lifetime_ms: int,
        room: int,
        large_room: int,
    ) -> list[ClaimedJob]:
        """Claim up to `room` of `job_ids` (at most `large_room` of them large), in queue order; each
        claim's in-progress key lives `lifetime_ms`."""
        if self._registered is None or self._registered[0] is not pool:
            self._registered = (pool, pool.register_script(self.script))
        replies = await self._registered[1](
            keys=[queue],
            args=[
                now_ms,
                lifetime_ms,
                room,
                in_progress_key_prefix,
                job_key_prefix,
                LARGE_JOB_BYTES,
                large_room,
                *job_ids,
            ],
        )
        return [
            ClaimedJob(replies[at].decode(), int(replies[at + 1]), bool(replies[at + 2]))
            for at in range(0, len(replies), 3)
        ]
