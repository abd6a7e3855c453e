"""`arq worker.main.WorkerSettings`: the worker's wiring, startup checks and shutdown."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from worker.context import WorkerContext
from worker.db.migrations import schema_state
from worker.db.session import create_engine, create_session_factory
from worker.serialization import deserialize, serialize
from worker.settings import Settings, get_settings
from worker.tasks import TASKS

logger = logging.getLogger(__name__)


class StartupError(SystemExit):
    """The worker cannot serve jobs; its message is the one line an operator needs."""


async def startup(ctx: WorkerContext) -> None:
    """Build the engine and session factory, and refuse to start unless the schema is at head."""
    settings = ctx["settings"]
    engine = create_engine(settings)
    ctx["engine"] = engine  # stored first, so that shutdown disposes it even if a check fails
    try:
        state = await schema_state(engine)
    except (OSError, SQLAlchemyError) as error:
        raise StartupError(
            f"cannot reach PostgreSQL at {settings.database_url_masked} "
            f"({type(error).__name__}: {_first_line(error)}): start it, or fix DATABASE_URL"
        ) from None
    if not state.at_head:
        raise StartupError(state.describe())
    ctx["session_factory"] = create_session_factory(engine)
    logger.info("database %s %s", settings.database_url_masked, state.describe())


async def shutdown(ctx: WorkerContext) -> None:
    """Dispose the engine's connections."""
    engine = ctx.get("engine")
    if engine is not None:
        await engine.dispose()


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else "no detail"


def worker_settings(settings: Settings) -> dict[str, Any]:
    """ARQ `Worker` keyword arguments for `settings` (tests build workers from this)."""
    return {
        "functions": list(TASKS),
        "queue_name": settings.queue_name,
        "redis_settings": settings.redis_settings,
        "max_jobs": settings.max_jobs,
        "job_timeout": settings.job_timeout,
        "max_tries": settings.max_tries,
        "keep_result": settings.keep_result,
        "health_check_interval": settings.health_check_interval,
        "on_startup": startup,
        "on_shutdown": shutdown,
        "job_serializer": serialize,
        "job_deserializer": deserialize,
        "ctx": {"settings": settings},
    }


# The arq CLI reads class attributes; reading the environment here is the only import-time work.
WorkerSettings = type("WorkerSettings", (), worker_settings(get_settings()))
