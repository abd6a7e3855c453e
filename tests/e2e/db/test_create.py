"""`python -m worker.db.create` (`make db-create`): create the database once; name the fix if it cannot."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from worker.settings import Settings

pytestmark = pytest.mark.slow


async def _create(database_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker.db.create",
        cwd=cwd,
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return subprocess.CompletedProcess([], process.returncode or 0, out.decode(), err.decode())


@pytest.fixture
async def missing_database_url(settings: Settings) -> AsyncIterator[str]:
    """The URL of a database that does not exist yet on the test server; dropped afterwards if made."""
    url = make_url(settings.database_url.get_secret_value())
    name = f"provisioning_test_create_{uuid.uuid4().hex[:8]}"
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        admin = create_async_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            await admin.dispose()


async def test_creates_the_database_once_then_finds_it(missing_database_url: str, tmp_path: Path) -> None:
    shown = make_url(missing_database_url).render_as_string(hide_password=True)
    created = await _create(missing_database_url, tmp_path)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == f"created database {shown}"
    found = await _create(missing_database_url, tmp_path)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == f"found database {shown}"


async def test_an_unreachable_server_names_the_fix_without_the_password(tmp_path: Path) -> None:
    done = await _create("postgresql+asyncpg://postgres:s3cret-pw@127.0.0.1:1/anything", tmp_path)
    assert done.returncode == 1
    assert "s3cret-pw" not in done.stdout + done.stderr
    assert done.stderr.startswith(
        "cannot create the database at postgresql+asyncpg://postgres:***@127.0.0.1:1/anything ("
    )
    assert done.stderr.strip().endswith("is PostgreSQL running, and may this user CREATE DATABASE?")
