"""The composition root: ARQ settings, startup checks (database reachable and at head), shutdown."""

from __future__ import annotations

import asyncio
import gc
import logging
from functools import partial
from typing import Any

from arq import cron
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from worker import tracing
from worker.db.migrations import SchemaState, schema_state
from worker.db.session import create_engine, create_session_factory
from worker.jobs.sealing import KeyRing
from worker.jobs.serialization import deserialize_job, serialize
from worker.passwords.hashing import PasswordHashing
from worker.retrying import cannot_reach, retry_within
from worker.runtime import metrics
from worker.runtime.context import WorkerContext
from worker.runtime.group_commit import CommandGroups
from worker.runtime.health import HealthReporter
from worker.runtime.hooks import JobHook, contained
from worker.runtime.logs import configure_logging, install_log_redaction
from worker.runtime.retries import is_transient
from worker.services.erasure import ErasureKeys
from worker.settings import Settings
from worker.tasks import TASKS

logger = logging.getLogger(__name__)

UNDEFINED_DATABASE = "3D000"  # SQLSTATE invalid_catalog_name
DATABASE_WAIT_BASE = 0.25
"""Seconds before the second try to reach PostgreSQL at start-up (then doubling, jittered)."""
DATABASE_WAIT_CAP = 5.0
"""Seconds between tries at most: the worker starts at most this long after PostgreSQL does."""


class StartupError(SystemExit):
    """The worker cannot serve jobs; its message is the one line an operator needs."""


async def startup(ctx: WorkerContext) -> None:
    """Build the engine and session factory, and refuse to start unless the schema is at head."""
    settings = ctx["settings"]
    engine = create_engine(settings)
    ctx["engine"] = engine  # stored first, so that shutdown disposes it even if a check fails
    if tracing.configure(tracing.WORKER_SERVICE):
        tracing.instrument_engine(engine.sync_engine)
    state = await _wait_for_database(engine, settings)
    if not state.at_head:
        raise StartupError(state.describe())
    await _warm_pool(engine, min(settings.db_pool_warm, settings.db_pool_size))
    ctx["session_factory"] = create_session_factory(engine)
    ctx["command_groups"] = (
        CommandGroups(
            ctx["session_factory"],
            retention=settings.tombstone_retention,
            window=settings.group_commit_window,
        )
        if settings.group_commit
        else None
    )
    ctx["bulk_slots"] = asyncio.Semaphore(settings.bulk_concurrency)
    ctx["hashing"] = PasswordHashing(
        settings.password_policy, threads=settings.hashing_threads, nice=settings.hash_nice
    )
    keys = settings.seal_key_list
    ctx["key_ring"] = KeyRing(keys, max_age=settings.seal_max_age) if keys else None
    ctx["erasure"] = ErasureKeys(settings.erasure_key_list)
    configure_logging(settings.log_format)
    install_log_redaction()
    reporter = HealthReporter(ctx["redis"], settings, engine.pool)
    await reporter.start()
    ctx["health"] = reporter
    if settings.metrics_port is not None:
        ctx["metrics_server"] = metrics.serve(settings.metrics_port)
    logger.info("database %s: %s", settings.database_url_masked, state.describe())
    # Everything built so far (modules, engine, validators) lives as long as the worker: leave it
    # out of the garbage collector's full passes, which otherwise walk all of it and stall the
    # event loop under bulk load (docs/performance.md, "Memory").
    gc.freeze()


async def _wait_for_database(engine: AsyncEngine, settings: Settings) -> SchemaState:
    """Read the schema state, retrying an unreachable database for up to `startup_db_wait` seconds."""

    def retryable(error: Exception) -> bool:
        return (
            isinstance(error, OSError | SQLAlchemyError)
            and _sqlstate(error) != UNDEFINED_DATABASE
            and is_transient(error)
        )

    def waiting(error: Exception, left: float) -> None:
        logger.warning(
            "PostgreSQL at %s is not reachable yet (%s); retrying for up to %.0fs",
            settings.database_url_masked,
            type(error).__name__,
            left,
        )

    try:
        return await retry_within(
            partial(schema_state, engine),
            within=settings.startup_db_wait,
            retryable=retryable,
            base=DATABASE_WAIT_BASE,
            cap=DATABASE_WAIT_CAP,
            waiting=waiting,
        )
    except (OSError, SQLAlchemyError) as error:
        if _sqlstate(error) == UNDEFINED_DATABASE:
            raise StartupError(
                f"database {engine.url.database!r} does not exist at {settings.database_url_masked}: "
                "run `make db-create` (or fix DATABASE_URL)"
            ) from None
        unreachable = cannot_reach("PostgreSQL", settings.database_url_masked, error)
        raise StartupError(f"{unreachable}: start it, or fix DATABASE_URL") from None


async def _warm_pool(engine: AsyncEngine, connections: int) -> None:
    """Open `connections` pooled connections now, so that the first burst of jobs does not.

    Best effort: a connection that cannot be opened now is opened when a job needs it.
    """
    opened = await asyncio.gather(
        *(engine.connect().start() for _ in range(connections)), return_exceptions=True
    )
    failures = [error for error in opened if isinstance(error, BaseException)]
    await asyncio.gather(*(c.close() for c in opened if not isinstance(c, BaseException)))
    if failures:
        logger.warning(
            "opened %d of %d database connections at startup (%s); the rest open when needed",
            connections - len(failures),
            connections,
            type(failures[0]).__name__,
        )


def _sqlstate(error: BaseException) -> str | None:
    orig = error.orig if isinstance(error, DBAPIError) else None
    return getattr(orig, "sqlstate", None)


async def shutdown(ctx: WorkerContext) -> None:
    """Delete this worker's health record, stop the hashing threads, dispose the engine."""
    reporter = ctx.get("health")
    if reporter is not None:
        await reporter.stop()
    server = ctx.get("metrics_server")
    if server is not None:
        server.shutdown()
    hashing = ctx.get("hashing")
    if hashing is not None:
        hashing.close()
    engine = ctx.get("engine")
    if engine is not None:
        await engine.dispose()
    tracing.shutdown()  # the spans still batched are exported before the worker exits


def worker_settings(
    settings: Settings,
    *,
    on_job_start: JobHook | None = None,
    on_job_end: JobHook | None = None,
    after_job_end: JobHook | None = None,
) -> dict[str, Any]:
    """ARQ `Worker` keyword arguments for `settings`; per-job hooks are wrapped so they cannot fail a job."""
    hooks = {"on_job_start": on_job_start, "on_job_end": on_job_end, "after_job_end": after_job_end}
    return {
        "functions": list(TASKS),
        # Housekeeping: one worker per queue runs each scheduled run (ARQ's cron job ids are the
        # name and the time, so the name carries the queue: two queues on one Redis do not share
        # runs). By import path: ARQ's cron() types its function's ctx as a plain dict.
        "cron_jobs": [
            cron("worker.tasks.expire_intents", name=f"{settings.queue_name}:expire_intents"),  # each minute
            cron(
                "worker.tasks.purge_expired", name=f"{settings.queue_name}:purge_expired", minute=17
            ),  # hourly
        ],
        "queue_name": settings.queue_name,
        "redis_settings": settings.redis_settings,
        "max_jobs": settings.max_jobs,
        "job_timeout": settings.job_timeout,
        "max_tries": settings.max_tries,
        "keep_result": settings.keep_result,
        "poll_delay": settings.poll_delay,
        "queue_read_limit": settings.queue_read_limit,
        "health_check_interval": settings.health_check_interval,
        # On SIGTERM/SIGINT: take no new jobs, let running ones finish for this long, then cancel
        # them (a cancelled job goes back on the queue and runs again).
        "job_completion_wait": settings.job_completion_wait,
        "on_startup": startup,
        "on_shutdown": shutdown,
        **{name: contained(hook) for name, hook in hooks.items() if hook is not None},
        "job_serializer": serialize,
        "job_deserializer": deserialize_job,  # keeps the envelope's trace context for the job's span
        "ctx": {"settings": settings},
    }
