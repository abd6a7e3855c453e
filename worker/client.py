"""A typed Python client for enqueueing provisioning jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Self

from arq.connections import ArqRedis, create_pool
from arq.jobs import Job

from worker.errors import InvalidPayload
from worker.payloads import PAYLOADS, RoleName, parse_payload
from worker.serialization import deserialize, serialize
from worker.settings import Settings, get_settings


async def connect_redis(settings: Settings) -> ArqRedis:
    """An ARQ Redis pool speaking the worker's JSON, defaulting to its queue."""
    return await create_pool(
        settings.redis_settings,
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=settings.queue_name,
    )


class DuplicateJob(Exception):
    """A job with this id is queued, running, or has a stored result already."""


class ProvisioningClient:
    """Enqueue jobs on the worker's queue, validated against the job contract before they leave."""

    def __init__(self, redis: ArqRedis, *, queue_name: str) -> None:
        self.redis = redis
        self.queue_name = queue_name

    @classmethod
    @asynccontextmanager
    async def connect(cls, settings: Settings | None = None) -> AsyncIterator[Self]:
        """A client on its own Redis pool, closed on exit."""
        settings = settings or get_settings()
        redis = await connect_redis(settings)
        try:
            yield cls(redis, queue_name=settings.queue_name)
        finally:
            await redis.aclose(close_connection_pool=True)

    async def provision_user(
        self, *, email: str, role: RoleName, password_hash: str | None = None, job_id: str | None = None
    ) -> Job:
        """Enqueue `provision_user`; `password_hash` must come from `worker.security.hash_password`."""
        return await self.enqueue(
            "provision_user", job_id=job_id, email=email, role=role, password_hash=password_hash
        )

    async def set_user_role(self, *, email: str, role: RoleName, job_id: str | None = None) -> Job:
        """Enqueue `set_user_role`."""
        return await self.enqueue("set_user_role", job_id=job_id, email=email, role=role)

    async def deactivate_user(self, *, email: str, job_id: str | None = None) -> Job:
        """Enqueue `deactivate_user`."""
        return await self.enqueue("deactivate_user", job_id=job_id, email=email)

    async def delete_user(self, *, email: str, job_id: str | None = None) -> Job:
        """Enqueue `delete_user`."""
        return await self.enqueue("delete_user", job_id=job_id, email=email)

    async def enqueue(self, function: str, /, *, job_id: str | None = None, **arguments: Any) -> Job:
        """Validate `arguments` for `function` and enqueue it; `DuplicateJob` if `job_id` is taken."""
        model = PAYLOADS.get(function)
        if model is None:
            raise InvalidPayload(f"unknown job function {function!r}: expected one of {', '.join(PAYLOADS)}")
        given = {name: value for name, value in arguments.items() if value is not None}
        payload = parse_payload(model, function, (), given).model_dump(mode="json", exclude_none=True)
        job = await self.redis.enqueue_job(function, _job_id=job_id, _queue_name=self.queue_name, **payload)
        if job is None:
            raise DuplicateJob(f"job {job_id} already exists: pick another id, or wait for its result")
        return job

    def job(self, job_id: str) -> Job:
        """A handle on an existing job, for its status or result."""
        return Job(job_id, self.redis, _queue_name=self.queue_name, _deserializer=deserialize)
