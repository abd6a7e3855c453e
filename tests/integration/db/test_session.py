"""The engine as `create_engine` builds it, on real PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.pool import AsyncAdaptedQueuePool

from tests.support.settings import make_settings
from worker.db.session import create_engine

SHOW = text("SHOW plan_cache_mode")


@pytest.mark.parametrize(
    ("pooler", "mode"),
    [("none", "force_generic_plan"), ("pgbouncer", "auto")],
)
async def test_a_direct_connection_runs_generic_plans_and_a_pooled_one_sets_nothing(
    database_url: str, pooler: str, mode: str
) -> None:
    engine = create_engine(make_settings(database_url, database_pooler=pooler))
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(SHOW)).scalar_one() == mode
    finally:
        await engine.dispose()


@pytest.mark.parametrize(("reads_only", "own_transactions"), [(True, True), (False, False)])
async def test_a_reads_only_engine_runs_each_statement_on_its_own(
    database_url: str, reads_only: bool, own_transactions: bool
) -> None:
    """The SCIM service's engine: no BEGIN/ROLLBACK around its single-statement reads."""
    settings = make_settings(database_url)
    engine = create_engine(settings, reads_only=reads_only)
    pool = engine.sync_engine.pool
    assert isinstance(pool, AsyncAdaptedQueuePool)
    if reads_only:  # keeps every connection it opens
        assert (pool.size(), pool._max_overflow) == (settings.db_pool_size + settings.db_max_overflow, 0)
    else:
        assert (pool.size(), pool._max_overflow) == (settings.db_pool_size, settings.db_max_overflow)
    try:
        async with engine.connect() as connection:
            first = (await connection.execute(text("SELECT txid_current()"))).scalar_one()
            second = (await connection.execute(text("SELECT txid_current()"))).scalar_one()
        assert (first != second) is own_transactions
    finally:
        await engine.dispose()
