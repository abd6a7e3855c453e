"""The failure taxonomy, shown with real failures from a real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.support.contexts import job_context
from worker import tasks
from worker.jobs.errors import InvalidPayload, StampRefused, UserNotFound
from worker.jobs.stamps import MICROS, now_micros
from worker.runtime.retries import is_deadlock, is_transient


@pytest.fixture
async def probe(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """A scratch table in the test database for provoking errors; dropped afterwards."""
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE retry_probe (id int PRIMARY KEY, n int NOT NULL)"))
        await conn.execute(text("INSERT INTO retry_probe VALUES (1, 0), (2, 0)"))
    try:
        yield engine
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DROP TABLE IF EXISTS retry_probe"))


async def test_serialization_failure_is_transient(probe: AsyncEngine) -> None:
    async with probe.connect() as one, probe.connect() as two:
        for conn in (one, two):
            await conn.execute(text("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"))
            await conn.execute(text("SELECT sum(n) FROM retry_probe"))
        await one.execute(text("UPDATE retry_probe SET n = n + 1 WHERE id = 1"))
        await two.execute(text("UPDATE retry_probe SET n = n + 1 WHERE id = 2"))
        await one.commit()

        async def write_skew() -> None:
            await two.execute(
                text("UPDATE retry_probe SET n = (SELECT sum(n) FROM retry_probe) WHERE id = 2")
            )
            await two.commit()

        with pytest.raises(DBAPIError) as failure:
            await write_skew()
    assert failure.value.orig.sqlstate == "40001"  # type: ignore[union-attr]
    assert is_transient(failure.value)
    assert not is_deadlock(failure.value)


async def test_deadlock_is_transient(probe: AsyncEngine) -> None:
    async with probe.connect() as one, probe.connect() as two:
        await one.execute(text("UPDATE retry_probe SET n = 1 WHERE id = 1"))
        await two.execute(text("UPDATE retry_probe SET n = 1 WHERE id = 2"))
        results = await asyncio.gather(
            one.execute(text("UPDATE retry_probe SET n = 2 WHERE id = 2")),
            two.execute(text("UPDATE retry_probe SET n = 2 WHERE id = 1")),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1
    assert errors[0].orig.sqlstate == "40P01"  # type: ignore[attr-defined]
    assert is_transient(errors[0])
    assert is_deadlock(errors[0])


async def test_a_terminated_backend_is_transient(probe: AsyncEngine) -> None:
    async with probe.connect() as victim, probe.connect() as admin:
        pid = await victim.scalar(text("SELECT pg_backend_pid()"))
        await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await admin.commit()
        await asyncio.sleep(0.1)
        with pytest.raises(DBAPIError) as failure:
            await victim.execute(text("SELECT 1"))
        await victim.invalidate()
    assert is_transient(failure.value)


async def test_a_stale_prepared_statement_after_a_schema_change_is_transient(probe: AsyncEngine) -> None:
    async with probe.connect() as cached, probe.connect() as migrator:
        await cached.execute(text("SELECT * FROM retry_probe"))
        await cached.commit()
        await migrator.execute(text("ALTER TABLE retry_probe ADD COLUMN extra int"))
        await migrator.commit()
        with pytest.raises(DBAPIError) as failure:
            await cached.execute(text("SELECT * FROM retry_probe"))
    assert "InvalidCachedStatementError" in repr(failure.value.orig)
    assert is_transient(failure.value)


async def test_a_pool_timeout_is_transient(database_url: str) -> None:
    engine = create_async_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    try:
        async with engine.connect():
            with pytest.raises(Exception) as failure:  # noqa: PT011 - the class is what we examine
                async with engine.connect():
                    pass
    finally:
        await engine.dispose()
    assert type(failure.value).__name__ == "TimeoutError"
    assert is_transient(failure.value)


async def test_prepared_statements_lost_behind_a_transaction_pooler_are_transient(probe: AsyncEngine) -> None:
    """What PgBouncer in transaction mode causes, produced for real: a statement name taken, or gone."""
    async with probe.connect() as conn:
        await conn.execute(text("PREPARE pooled AS SELECT 1"))
        with pytest.raises(DBAPIError) as taken:
            await conn.execute(text("PREPARE pooled AS SELECT 1"))
        await conn.rollback()
        with pytest.raises(DBAPIError) as gone:
            await conn.execute(text("EXECUTE never_prepared"))
    assert taken.value.orig.sqlstate == "42P05"  # type: ignore[union-attr]
    assert gone.value.orig.sqlstate == "26000"  # type: ignore[union-attr]
    assert is_transient(taken.value)
    assert is_transient(gone.value)


async def test_constraint_violations_and_our_own_refusals_are_permanent(probe: AsyncEngine) -> None:
    async with probe.connect() as conn:
        with pytest.raises(IntegrityError) as duplicate:
            await conn.execute(text("INSERT INTO retry_probe VALUES (1, 0)"))
        await conn.rollback()
        with pytest.raises(DBAPIError) as syntax:
            await conn.execute(text("SELEC 1"))
    assert not is_transient(duplicate.value)
    assert not is_transient(syntax.value)
    assert not is_transient(InvalidPayload("x"))
    assert not is_transient(UserNotFound(email="x@example.com", role="admin", window=60))
    assert not is_transient(ValueError("x"))


async def test_a_permanent_failure_is_raised_as_is(database_url: str) -> None:
    a_year_ago = now_micros() - 365 * 24 * 3600 * MICROS
    async with job_context(database_url, job_try=1) as ctx:
        with pytest.raises(StampRefused, match="older than TOMBSTONE_RETENTION"):
            await tasks.set_user_role(ctx, email="none@example.com", role="admin", as_of=a_year_ago)
