"""The engine as `create_engine` builds it, on real PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import text

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
