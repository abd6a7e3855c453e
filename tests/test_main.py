"""Worker startup and shutdown: refuse to run against a database that is not at head."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import TEST_REDIS_URL, make_settings, migrate
from worker.context import WorkerContext
from worker.db.migrations import alembic_config, head_revisions
from worker.main import StartupError, WorkerSettings, shutdown, startup

ROOT = Path(__file__).resolve().parents[1]
HEAD = ", ".join(sorted(head_revisions()))


async def _start(database_url: str) -> WorkerContext:
    ctx: WorkerContext = {"settings": make_settings(database_url)}
    try:
        await startup(ctx)
    finally:
        await shutdown(ctx)
    return ctx


async def test_startup_at_head_builds_the_session_factory(database_url: str) -> None:
    ctx: WorkerContext = {"settings": make_settings(database_url)}
    await startup(ctx)
    try:
        async with ctx["session_factory"]() as session:
            assert await session.scalar(text("SELECT count(*) FROM users")) is not None
        assert ctx["engine"].pool.checkedin() == 1
    finally:
        await shutdown(ctx)
    assert ctx["engine"].pool.checkedin() == 0  # disposed: the pooled connection is closed


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


def _arq_worker(database_url: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": TEST_REDIS_URL,
        "QUEUE_NAME": make_settings(database_url).queue_name,
    }
    return subprocess.run(
        [sys.executable, "-m", "arq", "worker.main.WorkerSettings"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_arq_process_exits_non_zero_with_one_line_naming_the_fix(empty_database_url: str) -> None:
    finished = _arq_worker(empty_database_url)
    assert finished.returncode == 1
    assert "Traceback" not in finished.stderr
    assert finished.stderr.strip().splitlines()[-1] == (
        f"database at revision None, code expects {HEAD}: run `make db-migrate`"
    )


def test_the_arq_process_exits_non_zero_when_the_database_is_unreachable() -> None:
    finished = _arq_worker("postgresql+asyncpg://postgres:pw-not-shown@127.0.0.1:1/provisioning")
    assert finished.returncode == 1
    last = finished.stderr.strip().splitlines()[-1]
    assert last.startswith("cannot reach PostgreSQL at postgresql+asyncpg://postgres:***@127.0.0.1:1/")
    assert "pw-not-shown" not in finished.stderr + finished.stdout


def test_worker_settings_wire_json_and_the_hooks() -> None:
    from worker.serialization import deserialize, serialize
    from worker.tasks import TASKS

    assert WorkerSettings.job_serializer is serialize  # type: ignore[attr-defined]
    assert WorkerSettings.job_deserializer is deserialize  # type: ignore[attr-defined]
    assert WorkerSettings.on_startup is startup  # type: ignore[attr-defined]
    assert WorkerSettings.on_shutdown is shutdown  # type: ignore[attr-defined]
    assert [f.__name__ for f in WorkerSettings.functions] == [t.__name__ for t in TASKS]  # type: ignore[attr-defined]
