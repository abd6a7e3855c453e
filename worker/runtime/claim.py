"""The claim: one Lua script takes up to the free slots' worth of due jobs in one round trip.

ARQ claims each job with four sequential round trips (WATCH, EXISTS, ZSCORE, MULTI/PSETEX/EXEC);
`claim.lua` makes ARQ's checks for every id at once (not in progress, still queued, not deferred to the
future) and sets the in-progress keys of those it takes. Large jobs (bulk batches) are taken only up
to their own room, so that a worker does not hoard batches that other workers could run; so are jobs
with a sealed password to hash, so that the cheap jobs queued behind them are taken past them.
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
    hashing: bool = False
    """It carries a sealed password (`password_sealed`) for the worker to hash."""


class Claim:
    """The claim script (read from `claim.lua` when the worker is built), registered once per pool:
    Redis runs it by its SHA and loads it again when missing."""

    def __init__(self) -> None:
        self.script = files("worker.runtime").joinpath("claim.lua").read_text(encoding="utf-8")
        self._registered: tuple[ArqRedis, AsyncScript] | None = None
        self._waiting_to_hash: set[str] = set()
        """Sealed-password jobs the script left queued for want of room. While there is none, they
        are not sent again: a poll then costs the script the other jobs only, not every queued
        password (up to QUEUE_READ_LIMIT of them, each read)."""

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
        hashing_room: int | None = None,
    ) -> list[ClaimedJob]:
        """Claim up to `room` of `job_ids` (at most `large_room` of them large, at most `hashing_room`
        with a sealed password; None: up to `room`), in queue order; each claim's in-progress key
        lives `lifetime_ms`."""
        if self._registered is None or self._registered[0] is not pool:
            self._registered = (pool, pool.register_script(self.script))
        if hashing_room is None:
            hashing_room = room
        ids = [job_id.decode() if isinstance(job_id, bytes) else job_id for job_id in job_ids]
        ids, held_back = self._held_back(ids, hashing_room)
        if not ids:
            self._waiting_to_hash = held_back
            return []
        claimed, waiting = await self._registered[1](
            keys=[queue],
            args=[
                now_ms,
                lifetime_ms,
                room,
                in_progress_key_prefix,
                job_key_prefix,
                LARGE_JOB_BYTES,
                large_room,
                hashing_room,
                *ids,
            ],
        )
        self._waiting_to_hash = held_back | {job_id.decode() for job_id in waiting}
        return [
            ClaimedJob(
                claimed[at].decode(), int(claimed[at + 1]), bool(claimed[at + 2]), bool(claimed[at + 3])
            )
            for at in range(0, len(claimed), 4)
        ]

    def _held_back(self, ids: list[str], hashing_room: int) -> tuple[list[str], set[str]]:
        """(`ids` to send, the sealed-password jobs known to wait that do not fit `hashing_room`)."""
        if not self._waiting_to_hash:
            return ids, set()
        sent, held_back = [], set()
        for job_id in ids:
            if job_id in self._waiting_to_hash:
                if hashing_room <= 0:
                    held_back.add(job_id)
                    continue
                hashing_room -= 1
            sent.append(job_id)
        return sent, held_back
