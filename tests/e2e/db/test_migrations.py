"""Two `alembic upgrade head` processes at once, as two releases migrating together."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from sqlalchemy.ext.asyncio import create_async_engine

from worker.db import migrations
from worker.db.migrations import ALEMBIC_INI, schema_state


def test_two_concurrent_upgrades_both_succeed(empty_database_url: str) -> None:
    """Two releases migrating at once: the advisory lock in env.py serialises them."""
    env = {**os.environ, "DATABASE_URL": empty_database_url}
    alembic = [sys.executable, "-m", "alembic", "-c", str(ALEMBIC_INI), "upgrade", "head"]
    processes = [
        subprocess.Popen(alembic, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    # Exactly one of them ran the migration; the other found the schema at head.
    assert sum("Running upgrade" in output for output in outputs) == 1
    state = asyncio.run(_state(empty_database_url))
    assert state.at_head


async def _state(url: str) -> migrations.SchemaState:
    engine = create_async_engine(url)
    try:
        return await schema_state(engine)
    finally:
        await engine.dispose()
