"""Worker and job contexts as ARQ hands them to our hooks and tasks, built on test settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from tests.support.settings import make_settings
from worker.db.session import create_engine, create_session_factory
from worker.runtime.context import JobContext, WorkerContext
from worker.services.erasure import ErasureKeys
from worker.wiring import shutdown, startup


async def start_and_stop(database_url: str, **overrides: object) -> WorkerContext:
    """Run the worker's startup then its shutdown on `database_url`, without waiting for it."""
    ctx: WorkerContext = {"settings": make_settings(database_url, **{"startup_db_wait": 0, **overrides})}
    try:
        await startup(ctx)
    finally:
        await shutdown(ctx)
    return ctx


@asynccontextmanager
async def job_context(database_url: str, job_try: int, **overrides: object) -> AsyncIterator[JobContext]:
    """The context of try `job_try` of a job, with a session factory on `database_url`."""
    settings = make_settings(database_url, **overrides)
    engine = create_engine(settings)
    try:
        yield {
            "settings": settings,
            "session_factory": create_session_factory(engine),
            "erasure": ErasureKeys(settings.erasure_key_list),
            "job_id": "retry-test",
            "enqueue_time": datetime.now(UTC),
            "job_try": job_try,
        }
    finally:
        await engine.dispose()
