"""Worker startup and shutdown: refuse to run against a database that is not at head."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest
from alembic import command
from arq.connections import ArqRedis
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.contexts import start_and_stop
from tests.support.databases import migrate
from tests.support.settings import make_settings
from tests.support.tcp_proxy import TcpProxy
from worker.db.migrations import alembic_config, head_revisions
from worker.runtime.context import WorkerContext
from worker.wiring import StartupError, _warm_pool, shutdown, startup

HEAD = ", ".join(sorted(head_revisions()))


async def test_startup_at_head_builds_the_session_factory(database_url: str, redis: ArqRedis) -> None:
    ctx: WorkerContext = {"settings": make_settings(database_url, db_pool_warm=3), "redis": redis}
    gc.unfreeze()
    await startup(ctx)
    try:
        async with ctx["session_factory"]() as session:
            assert await session.scalar(text("SELECT count(*) FROM users")) is not None
        assert ctx["engine"].pool.checkedin() == 3  # type: ignore[attr-defined]  # opened at startup (DB_POOL_WARM), ready for jobs
        assert gc.get_freeze_count() > 0  # what startup built is kept out of full collections
    finally:
        gc.unfreeze()
        await shutdown(ctx)
    assert ctx["engine"].pool.checkedin() == 0  # type: ignore[attr-defined]  # disposed: the pooled connections are closed


async def test_startup_refuses_an_empty_database(empty_database_url: str) -> None:
    with pytest.raises(StartupError) as refused:
        await start_and_stop(empty_database_url)
    assert str(refused.value) == f"database at revision None, code expects {HEAD}: run `make db-migrate`"


async def test_startup_refuses_a_database_one_revision_behind(empty_database_url: str) -> None:
    await migrate(empty_database_url, "head")
    await asyncio.to_thread(command.downgrade, alembic_config(empty_database_url), "-1")
    with pytest.raises(StartupError, match=r"code expects .*: run `make db-migrate`$"):
        await start_and_stop(empty_database_url)


async def test_startup_refuses_a_schema_newer_than_the_code(empty_database_url: str) -> None:
    await migrate(empty_database_url, "head")
    engine = create_async_engine(empty_database_url)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = 'f00dcafe1234'"))
    await engine.dispose()
    with pytest.raises(
        StartupError, match=r"f00dcafe1234, which this code does not know.*deploy the matching code"
    ):
        await start_and_stop(empty_database_url)


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
        await start_and_stop(missing, startup_db_wait=20)  # not retried: waiting would not create it
    assert str(refused.value).startswith("database 'no_such_db_here' does not exist at ")
    assert str(refused.value).endswith("run `make db-create` (or fix DATABASE_URL)")


async def test_warming_the_pool_is_best_effort(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    engine = create_async_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=0.1)
    try:
        with caplog.at_level(logging.WARNING, logger="worker.wiring"):
            await _warm_pool(engine, 3)  # the pool has room for one: the other two time out
        assert engine.pool.checkedin() == 1  # type: ignore[attr-defined]  # QueuePool's, not Pool's
    finally:
        await engine.dispose()
    assert "opened 1 of 3 database connections at startup (TimeoutError)" in caplog.text
