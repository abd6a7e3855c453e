"""Worker startup and shutdown: refuse to run against a database that is not at head."""

from __future__ import annotations

import asyncio
import gc
import logging
import subprocess
from pathlib import Path

import pytest
from alembic import command
from arq.connections import ArqRedis
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import make_settings, migrate
from tests.processes import run_module, worker_env
from tests.tcp_proxy import TcpProxy
from worker.db.migrations import alembic_config, head_revisions
from worker.main import WorkerSettings
from worker.runtime.context import WorkerContext
from worker.runtime.wiring import StartupError, _warm_pool, shutdown, startup, worker_settings
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
HEAD = ", ".join(sorted(head_revisions()))


async def _start(database_url: str, **overrides: object) -> WorkerContext:
    ctx: WorkerContext = {"settings": make_settings(database_url, **{"startup_db_wait": 0, **overrides})}
    try:
        await startup(ctx)
    finally:
        await shutdown(ctx)
    return ctx


async def test_startup_at_head_builds_the_session_factory(database_url: str, redis: ArqRedis) -> None:
    ctx: WorkerContext = {"settings": make_settings(database_url, db_pool_warm=3), "redis": redis}
    gc.unfreeze()
    await startup(ctx)
    try:
        async with ctx["session_factory"]() as session:
            assert await session.scalar(text("SELECT count(*) FROM users")) is not None
        assert ctx["engine"].pool.checkedin() == 3  # opened at startup (DB_POOL_WARM), ready for jobs
        assert gc.get_freeze_count() > 0  # what startup built is kept out of full collections
    finally:
        gc.unfreeze()
        await shutdown(ctx)
    assert ctx["engine"].pool.checkedin() == 0  # disposed: the pooled connections are closed


async def test_startup_refuses_an_empty_database(empty_database_url: str) -> None:
    with pytest.raises(StartupError) as refused:
        await _start(empty_database_url)
    assert str(refused.value) == f"database at revision None, code expects {HEAD}: run `make db-migrate`"


async def test_startup_refuses_a_database_one_revision_behind(empty_database_url: str) -> None:
    await migrate(empty_database_url, "head")
    await asyncio.to_thread(command.downgrade, alembic_config(empty_database_url), "-1")
    with pytest.raises(StartupError, match=r"code expects .*: run `make db-migrate`$"):
        await _start(empty_database_url)


async def test_startup_refuses_a_schema_newer_than_the_code(empty_database_url: str) -> None:
    await migrate(empty_database_url, "head")
    engine = create_async_engine(empty_database_url)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = 'f00dcafe1234'"))
    await engine.dispose()
    with pytest.raises(
        StartupError, match=r"f00dcafe1234, which this code does not know.*deploy the matching code"
    ):
        await _start(empty_database_url)


async def test_startup_refuses_an_unreachable_database_without_showing_the_password() -> None:
    url = "postgresql+asyncpg://provisioner:s3cr3t-pw@127.0.0.1:1/provisioning"
    with pytest.raises(StartupError) as refused:
        await _start(url)
    message = str(refused.value)
    assert message.startswith("cannot reach PostgreSQL at postgresql+asyncpg://provisioner:***@127.0.0.1:1/")
    assert message.endswith("start it, or fix DATABASE_URL")
    assert "s3cr3t-pw" not in message
    assert "\n" not in message


def _arq_worker(database_url: str, **extra: object) -> subprocess.CompletedProcess[str]:
    return run_module(
        "arq", "worker.main.WorkerSettings", env=worker_env(make_settings(database_url), **extra)
    )


def test_the_arq_process_exits_non_zero_with_one_line_naming_the_fix(empty_database_url: str) -> None:
    finished = _arq_worker(empty_database_url)
    assert finished.returncode == 1
    assert "Traceback" not in finished.stderr
    assert finished.stderr.strip().splitlines()[-1] == (
        f"database at revision None, code expects {HEAD}: run `make db-migrate`"
    )


def test_the_arq_process_exits_non_zero_when_the_database_is_unreachable() -> None:
    finished = _arq_worker(
        "postgresql+asyncpg://postgres:pw-not-shown@127.0.0.1:1/provisioning", startup_db_wait=1
    )
    assert finished.returncode == 1
    assert "is not reachable yet (ConnectionRefusedError); retrying" in finished.stderr  # it waited first
    last = finished.stderr.strip().splitlines()[-1]
    assert last.startswith("cannot reach PostgreSQL at postgresql+asyncpg://postgres:***@127.0.0.1:1/")
    assert "pw-not-shown" not in finished.stderr + finished.stdout


def test_worker_settings_wire_json_and_the_hooks() -> None:
    from worker.jobs.serialization import deserialize, serialize
    from worker.tasks import TASKS

    assert WorkerSettings.job_serializer is serialize  # type: ignore[attr-defined]
    assert WorkerSettings.job_deserializer is deserialize  # type: ignore[attr-defined]
    assert WorkerSettings.on_startup is startup  # type: ignore[attr-defined]
    assert WorkerSettings.on_shutdown is shutdown  # type: ignore[attr-defined]
    assert [f.__name__ for f in WorkerSettings.functions] == [t.__name__ for t in TASKS]  # type: ignore[attr-defined]


async def test_startup_waits_for_a_database_that_comes_up(database_url: str, redis: ArqRedis) -> None:
    """A release step and a database often start together: startup retries a refused connection."""
    proxy = TcpProxy(make_url(database_url).port or 5432)
    proxied = make_url(database_url).set(port=proxy.port).render_as_string(hide_password=False)
    ctx: WorkerContext = {"settings": make_settings(proxied, startup_db_wait=20), "redis": redis}
    opener = asyncio.get_running_loop().call_later(1.0, lambda: asyncio.ensure_future(proxy.start()))
    started = asyncio.get_running_loop().time()
    try:
        await startup(ctx)
        assert asyncio.get_running_loop().time() - started >= 1.0  # it was refused at first, and waited
        assert "session_factory" in ctx
    finally:
        opener.cancel()
        await shutdown(ctx)
        await proxy.stop()


async def test_startup_names_the_fix_for_a_missing_database(database_url: str) -> None:
    missing = make_url(database_url).set(database="no_such_db_here").render_as_string(hide_password=False)
    with pytest.raises(StartupError) as refused:
        await _start(missing, startup_db_wait=20)  # not retried: waiting would not create it
    assert str(refused.value).startswith("database 'no_such_db_here' does not exist at ")
    assert str(refused.value).endswith("run `make db-create` (or fix DATABASE_URL)")


async def test_warming_the_pool_is_best_effort(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    engine = create_async_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=0.1)
    try:
        with caplog.at_level(logging.WARNING, logger="worker.runtime.wiring"):
            await _warm_pool(engine, 3)  # the pool has room for one: the other two time out
        assert engine.pool.checkedin() == 1
    finally:
        await engine.dispose()
    assert "opened 1 of 3 database connections at startup (TimeoutError)" in caplog.text


def test_housekeeping_cron_jobs_are_named_after_the_queue(settings: Settings) -> None:
    """ARQ's cron job ids are the name and the time: two queues on one Redis must not share runs."""
    cron_jobs = worker_settings(settings)["cron_jobs"]
    assert [(job.name, job.coroutine.__name__) for job in cron_jobs] == [
        (f"{settings.queue_name}:expire_intents", "expire_intents"),
        (f"{settings.queue_name}:purge_expired", "purge_expired"),
    ]
