"""The SCIM application in-process (httpx over ASGI, its lifespan run), on the test database and
Redis, with a real worker consuming a queue of the test's own."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.settings import make_settings
from worker.client import connect_redis
from worker.db.session import SessionFactory
from worker.jobs.sealing import new_seal_key
from worker.runtime.arq_worker import ProvisioningWorker
from worker.runtime.health import record_prefix
from worker.scim.app import create_app
from worker.settings import Settings
from worker.wiring import worker_settings

SCIM = "application/scim+json"
OLD_TOKEN = "scim-test-old-" + uuid.uuid4().hex
NEW_TOKEN = "scim-test-new-" + uuid.uuid4().hex
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def scim_test_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings with two tokens (rotation), a seal key and a queue of the test's own."""
    values: dict[str, Any] = {
        "scim_tokens": f"{OLD_TOKEN},{NEW_TOKEN}",
        "seal_keys": new_seal_key(),
        "scim_job_wait": 15.0,
    }
    values.update(overrides)
    return make_settings(database_url, **values)


@asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[ProvisioningWorker]:
    """A real worker, built as `WorkerSettings` builds it, serving `settings`' queue until the exit."""
    options = {**worker_settings(settings), "burst": False, "handle_signals": False, "poll_delay": 0.01}
    worker = ProvisioningWorker(**options)
    task = asyncio.create_task(worker.main())
    try:
        await _started(settings, task)
        yield worker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await worker.close()


async def _started(settings: Settings, task: asyncio.Task[None]) -> None:
    """Until the worker's health record is in Redis: stopping it earlier would cut its start-up short."""
    redis = await connect_redis(settings)
    try:
        async with asyncio.timeout(30):
            while not [key async for key in redis.scan_iter(match=record_prefix(settings.queue_name) + "*")]:
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
    finally:
        await redis.aclose(close_connection_pool=True)


@asynccontextmanager
async def scim_client(settings: Settings, token: str | None = OLD_TOKEN) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the app's base URL (…/scim/v2/), the app's lifespan running around it."""
    app = create_app(settings)
    headers = {"Accept": SCIM, "Content-Type": SCIM}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://scim.test/scim/v2/", headers=headers, timeout=30
        ) as client:
            yield client


@dataclass
class Scim:
    """The app's client, its settings, Redis and the database, for one test."""

    client: httpx.AsyncClient
    settings: Settings
    redis: ArqRedis
    engine: AsyncEngine

    async def queued(self) -> list[str]:
        """The ids of the SCIM jobs waiting on the test's queue (the worker's cron jobs left out)."""
        waiting = [item.decode() for item in await self.redis.zrange(self.settings.queue_name, 0, -1)]
        return [job_id for job_id in waiting if ":scim:" in job_id]

    async def scim_keys(self) -> list[bytes]:
        """Every Redis key the SCIM service wrote for the test's queue: jobs, results, counters."""
        return [key async for key in self.redis.scan_iter(match=f"*{self.settings.queue_name}:scim:*")]

    async def user_count(self) -> int:
        """How many users the database holds."""
        async with self.engine.connect() as connection:
            return int((await connection.execute(text("SELECT count(*) FROM users"))).scalar_one())

    async def row(self, email: str) -> dict[str, Any] | None:
        """The `users` row of `email` (case-insensitive), as a dict."""
        async with self.engine.connect() as connection:
            found = await connection.execute(
                text("SELECT * FROM users WHERE key = lower(:email)"), {"email": email}
            )
            row = found.mappings().first()
        return dict(row) if row is not None else None


@pytest.fixture
def scim_settings(database_url: str) -> Settings:
    """This test's settings."""
    return scim_test_settings(database_url)


@pytest.fixture
async def scim(
    scim_settings: Settings, redis: ArqRedis, engine: AsyncEngine, committing_sessions: SessionFactory
) -> AsyncIterator[Scim]:
    """The app with a worker behind it; the tables are emptied afterwards."""
    async with running_worker(scim_settings), scim_client(scim_settings) as client:
        yield Scim(client, scim_settings, redis, engine)


@pytest.fixture
async def scim_without_worker(
    scim_settings: Settings, redis: ArqRedis, engine: AsyncEngine, committing_sessions: SessionFactory
) -> AsyncIterator[Scim]:
    """The app with nobody serving its queue (and a short SCIM_JOB_WAIT)."""
    settings = scim_settings.model_copy(update={"scim_job_wait": 0.3})
    async with scim_client(settings) as client:
        yield Scim(client, settings, redis, engine)


def new_email(name: str = "user") -> str:
    """An address no other test uses."""
    return f"{name}-{uuid.uuid4().hex[:10]}@example.com"


def user_body(email: str, **extra: Any) -> dict[str, Any]:
    """A minimal SCIM User for `email`."""
    return {"schemas": [USER_SCHEMA], "userName": email, **extra}


def patch_body(*operations: dict[str, Any]) -> dict[str, Any]:
    """A PatchOp of `operations`."""
    return {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}
