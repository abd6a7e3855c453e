"""A write request's jobs: ids derived from the request, enqueued stamped at arrival, awaited.

Job id: `<QUEUE_NAME>:scim:<digest>:<generation>:<function>`, where digest is
HMAC-SHA256(the token's SHA-256, method|path|canonical JSON body). The generation is the Redis
counter `<QUEUE_NAME>:scim:<digest>:answered`, incremented once the request was answered with a
final status (anything but 503). So:

- a retry after a 503 (nothing answered yet) derives the same job id, and joins the queued job
  instead of queueing a newer command;
- the same request sent again after an answer is a new command under a new id (an identity
  provider may legitimately send `active: false` again after an `active: true`).

The counter outlives the jobs' stored results (KEEP_RESULT), or a repeat arriving once it expired
would derive generation 0 again and join an old result.

Waiting uses `ProvisioningClient.wait_for`: woken by the worker's announcement on
`<queue>:finished` (Redis pub/sub), with a read of the results every 250 ms as the fallback.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from arq.jobs import Job, JobResult

from worker.client import DuplicateJob, JobFailed, ProvisioningClient
from worker.jobs.errors import InvalidPayload
from worker.jobs.stamps import CLOCK
from worker.scim.errors import ScimError, bad_request, not_found

ANSWERED_MIN_TTL = 120
"""Seconds the answered counter lives at least (it also outlives KEEP_RESULT)."""

_VANISHED = frozenset({"NotProvisionedYet", "GaveUp", "UserNotFound"})
"""Errors of a command on an existing user that mean the user is gone."""

Enqueue = Callable[[str, int], Awaitable[Job]]
"""Enqueues one command under (job id, as_of)."""


def canonical_body(body: Any) -> str:
    """The body as canonical JSON (sorted keys, no spaces): equal documents, equal text."""
    if body is None:
        return ""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_digest(token_digest: bytes, method: str, path: str, body: Any) -> str:
    """HMAC-SHA256 of method|path|canonical body, keyed with the token's digest (hex)."""
    message = f"{method.upper()}|{path}|{canonical_body(body)}".encode()
    return hmac.new(token_digest, message, hashlib.sha256).hexdigest()


def answered_key(queue_name: str, digest: str) -> str:
    """The Redis counter of a request's answers (its job ids' generation)."""
    return f"{queue_name}:scim:{digest}:answered"


def derived_job_id(queue_name: str, digest: str, generation: int, function: str) -> str:
    """The job id of `function` for a request's `generation`."""
    return f"{queue_name}:scim:{digest}:{generation}:{function}"


def error_type(result: JobResult) -> str:
    """The class name of a failed job's error."""
    error = result.result
    if isinstance(error, JobFailed):
        return error.error_type
    if isinstance(error, BaseException):
        return type(error).__name__
    return "unknown"


def failure(result: JobResult, *, needs_user: bool) -> ScimError:
    """What a failed job means for the request: 400, 404 or 500 (never the job's secrets)."""
    kind = error_type(result)
    if kind == "InvalidPayload":
        error = result.result
        message = error.message if isinstance(error, JobFailed) else str(error)
        return bad_request("invalidValue", f"the request was refused: {message}")
    if needs_user and kind in _VANISHED:
        return not_found("the user no longer exists")
    return ScimError(500, f"the provisioning job failed ({kind}); see the worker's log for this job id")


class RequestJobs:
    """The jobs one write request enqueues, under ids derived from it."""

    def __init__(
        self, client: ProvisioningClient, digest: str, *, within: float, keep_result: int = 0
    ) -> None:
        self.client = client
        self.digest = digest
        self.within = within
        self.answered_ttl = max(ANSWERED_MIN_TTL, keep_result + 60)
        self.job_ids: list[str] = []
        self._generation: int | None = None

    @property
    def queue_name(self) -> str:
        """The queue the jobs go to."""
        return self.client.queue_name

    async def generation(self) -> int:
        """How many times this request was answered already (read once per request)."""
        if self._generation is None:
            raw = await self.client.redis.get(answered_key(self.queue_name, self.digest))
            self._generation = int(raw) if raw is not None else 0
        return self._generation

    async def submit(self, function: str, enqueue: Enqueue) -> str:
        """Enqueue `function` under its derived id, stamped now; joins the job if it exists already."""
        job_id = derived_job_id(self.queue_name, self.digest, await self.generation(), function)
        try:
            await enqueue(job_id, CLOCK.now())
        except DuplicateJob:
            pass  # a retry of this very request: wait for the job already queued
        except InvalidPayload as error:
            raise bad_request("invalidValue", str(error)) from None
        self.job_ids.append(job_id)
        return job_id

    async def wait(self, *, needs_user: bool = False) -> None:
        """Until every job finished (503 with Retry-After if one did not in time); a failure's error."""
        if not self.job_ids:
            return
        results = await self.client.wait_for(self.job_ids, within=self.within)
        if any(job_id not in results for job_id in self.job_ids):
            raise ScimError(
                503,
                "the provisioning worker did not answer in time; the command is queued and still applies: "
                "retry the same request to wait for it",
                headers={"Retry-After": str(max(1, math.ceil(self.within)))},
            )
        for job_id in self.job_ids:
            result = results[job_id]
            if not result.success:
                raise failure(result, needs_user=needs_user)

    async def answered(self) -> None:
        """Count the request as answered: the same request sent again is a new command."""
        if not self.job_ids:
            return
        key = answered_key(self.queue_name, self.digest)
        async with self.client.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, self.answered_ttl)
            await pipe.execute()
