"""A typed Python client for enqueueing provisioning jobs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Self

from arq.connections import ArqRedis
from arq.jobs import Job, JobResult

from worker import tracing
from worker.jobs.errors import DuplicateJob as DuplicateJob  # what callers of enqueue() catch
from worker.jobs.errors import InvalidPayload
from worker.jobs.errors import JobFailed as JobFailed  # what Job.result() raises for a failed job
from worker.jobs.payloads import PAYLOADS, RoleName, parse_payload
from worker.jobs.sealing import seal_password
from worker.jobs.serialization import carrying_trace, deserialize, serialize
from worker.jobs.stamps import CLOCK
from worker.redis_connection import open_redis
from worker.retrying import is_redis_unreachable, retry_within
from worker.settings import Settings, get_settings
from worker.waiting import FinishedJobs

ENQUEUE_RETRY_BASE = 0.1
"""Seconds before an enqueue that lost Redis is tried again (then doubling, jittered)."""
ENQUEUE_RETRY_CAP = 2.0
"""Seconds between tries at most: an enqueue goes through at most this long after Redis is back."""

AsOfValue = int | str
"""An `as_of`: integer microseconds since the epoch, or an RFC 3339 timestamp."""


async def connect_redis(settings: Settings) -> ArqRedis:
    """An ARQ Redis pool speaking the worker's JSON, defaulting to its queue."""
    return await open_redis(
        settings.redis_settings,
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=settings.queue_name,
    )


class ProvisioningClient:
    """Enqueue jobs on the worker's queue, validated against the job contract before they leave."""

    def __init__(
        self, redis: ArqRedis, *, queue_name: str, seal_key: str | None = None, retry_for: float = 30.0
    ) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self.retry_for = retry_for
        self._seal_key = seal_key
        self._finished: FinishedJobs | None = None

    @classmethod
    @asynccontextmanager
    async def connect(cls, settings: Settings | None = None) -> AsyncIterator[Self]:
        """A client on its own Redis pool, closed on exit."""
        settings = settings or get_settings()
        redis = await connect_redis(settings)
        try:
            keys = settings.seal_key_list
            client = cls(
                redis,
                queue_name=settings.queue_name,
                seal_key=keys[0] if keys else None,
                retry_for=settings.enqueue_retry_for,
            )
            try:
                yield client
            finally:
                await client.aclose()
        finally:
            await redis.aclose(close_connection_pool=True)

    async def provision_user(
        self,
        *,
        email: str,
        role: RoleName,
        password: str | None = None,
        password_hash: str | None = None,
        external_id: str | None = None,
        job_id: str | None = None,
        as_of: AsOfValue | None = None,
    ) -> Job:
        """Enqueue `provision_user`; a `password` is sealed here and hashed by the worker,
        a `password_hash` (argon2id, e.g. from `worker.passwords.policy.hash_password`) is stored as is."""
        sealed = self.seal(password) if password is not None else None
        return await self.enqueue(
            "provision_user",
            job_id=job_id,
            as_of=as_of,
            email=email,
            role=role,
            password_hash=password_hash,
            password_sealed=sealed,
            external_id=external_id,
        )

    async def update_user(
        self,
        *,
        email: str,
        role: RoleName | None = None,
        active: bool | None = None,
        external_id: str | None = None,
        password: str | None = None,
        password_hash: str | None = None,
        job_id: str | None = None,
        as_of: AsOfValue | None = None,
    ) -> Job:
        """Enqueue `update_user`: only the fields given change (`active=True` reactivates, keeping the
        role); the job waits for a user not provisioned yet. A `password` is sealed here."""
        sealed = self.seal(password) if password is not None else None
        return await self.enqueue(
            "update_user",
            job_id=job_id,
            as_of=as_of,
            email=email,
            role=role,
            active=active,
            external_id=external_id,
            password_hash=password_hash,
            password_sealed=sealed,
        )

    async def provision_users(
        self, users: Sequence[Mapping[str, Any]], *, job_id: str | None = None, as_of: AsOfValue | None = None
    ) -> Job:
        """Enqueue one `provision_users` batch (at most BULK_MAX_BATCH entries)."""
        return await self.enqueue(
            "provision_users", job_id=job_id, as_of=as_of, users=[dict(user) for user in users]
        )

    def seal(self, password: str) -> str:
        """Seal `password` with the primary SEAL_KEYS key, for a job's `password_sealed`."""
        if self._seal_key is None:
            raise InvalidPayload(
                "a password can only be sent sealed: set SEAL_KEYS (the worker's keys), "
                "or send a password_hash instead"
            )
        return seal_password(password, self._seal_key)

    async def set_user_role(
        self, *, email: str, role: RoleName, job_id: str | None = None, as_of: AsOfValue | None = None
    ) -> Job:
        """Enqueue `set_user_role`."""
        return await self.enqueue("set_user_role", job_id=job_id, as_of=as_of, email=email, role=role)

    async def deactivate_user(
        self, *, email: str, job_id: str | None = None, as_of: AsOfValue | None = None
    ) -> Job:
        """Enqueue `deactivate_user`."""
        return await self.enqueue("deactivate_user", job_id=job_id, as_of=as_of, email=email)

    async def delete_user(
        self, *, email: str, job_id: str | None = None, as_of: AsOfValue | None = None
    ) -> Job:
        """Enqueue `delete_user`."""
        return await self.enqueue("delete_user", job_id=job_id, as_of=as_of, email=email)

    async def enqueue(
        self,
        function: str,
        /,
        *,
        job_id: str | None = None,
        as_of: AsOfValue | None = None,
        follows: Mapping[str, str] | None = None,
        **arguments: Any,
    ) -> Job:
        """Validate `arguments` for `function` and enqueue it; `DuplicateJob` if `job_id` is taken.

        While Redis is unreachable (an outage, a failover) the enqueue is retried with backoff for
        up to `retry_for` seconds, under the same job id, so that it is queued at most once.
        Every job is stamped: `as_of` when given (the time the system of record made the command),
        else this process's clock, which never repeats or goes back, so that this client's commands
        keep their order (docs/jobs.md, "Ordering").

        Traced (`worker.tracing`), the enqueue is a producer span whose context the job carries in
        its envelope (docs/jobs.md, "Tracing"); `follows`, the W3C trace context of an earlier job
        this one sends again (`retry`), becomes a link from that span.
        """
        model = PAYLOADS.get(function)
        if model is None:
            raise InvalidPayload(
                f"unknown job function {function!r}: expected one of {', '.join(PAYLOADS)}", function=function
            )
        arguments["as_of"] = CLOCK.now() if as_of is None else as_of
        given = {name: value for name, value in arguments.items() if value is not None}
        payload = parse_payload(model, function, (), given).model_dump(mode="json", exclude_none=True)
        ours = job_id is None
        job_id = job_id or uuid.uuid4().hex  # chosen here, so that a retried enqueue keeps it
        tracer = tracing.tracer()
        if tracer is None:
            return await self._send(function, job_id, payload, ours=ours)
        link = tracing.span_context(follows)
        with (
            tracing.span(
                tracer,
                f"send {function}",
                kind="producer",
                links=[link] if link is not None else [],
                attributes={
                    "messaging.message.id": job_id,
                    "job.function": function,
                    "messaging.destination.name": self.queue_name,
                },
            ),
            carrying_trace(tracing.inject()),
        ):
            return await self._send(function, job_id, payload, ours=ours)

    async def _send(self, function: str, job_id: str, payload: dict[str, Any], *, ours: bool) -> Job:
        """Queue the validated job under `job_id`, riding out a lost Redis for up to `retry_for`."""
        lost: list[Exception] = []  # attempts that lost Redis: each may have been queued
        job = await retry_within(
            partial(self.redis.enqueue_job, function, _job_id=job_id, _queue_name=self.queue_name, **payload),
            within=self.retry_for,
            retryable=is_redis_unreachable,
            base=ENQUEUE_RETRY_BASE,
            cap=ENQUEUE_RETRY_CAP,
            waiting=lambda error, _: lost.append(error),  # retried under the same id
        )
        if job is not None:
            return job
        if lost and (ours or await self._queued_as(job_id, function, payload)):
            return self.job(job_id)  # our own earlier attempt made it
        raise DuplicateJob(job_id)

    async def _queued_as(self, job_id: str, function: str, payload: dict[str, Any]) -> bool:
        """True if the job with this id is this very command (an earlier attempt of ours)."""
        info = await self.job(job_id).info()
        return info is not None and info.function == function and info.kwargs == payload

    async def wait_for(self, job_ids: Sequence[str], *, within: float) -> dict[str, JobResult]:
        """The results of those of `job_ids` that finish within `within` seconds, by job id.

        Woken by the worker's announcement of each finish (`worker.waiting`), not by polling;
        a failed job's `result` is a `JobFailed` naming its error type.
        """
        if self._finished is None:
            self._finished = FinishedJobs(self.redis, self.queue_name, deserializer=deserialize)
        return await self._finished.wait(job_ids, within=within)

    async def aclose(self) -> None:
        """Stop waiting for announcements (the Redis pool is the caller's)."""
        if self._finished is not None:
            await self._finished.aclose()
            self._finished = None

    def job(self, job_id: str) -> Job:
        """A handle on an existing job, for its status or result."""
        return Job(job_id, self.redis, _queue_name=self.queue_name, _deserializer=deserialize)
