"""Shared bench plumbing: a throw-away database and Redis keys of the bench's own."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from tests.support.databases import create_database, drop_database, migrate

ADMIN_DATABASE_URL = os.environ.get(
    "BENCH_ADMIN_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
RUN = uuid.uuid4().hex[:8]


@asynccontextmanager
async def bench_database(label: str) -> AsyncIterator[str]:
    """A migrated database for one measurement, dropped afterwards."""
    name = f"provisioning_bench_{RUN}_{label}"
    url = await create_database(name, ADMIN_DATABASE_URL)
    try:
        await migrate(url)
        yield url
    finally:
        await drop_database(name, ADMIN_DATABASE_URL)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of `values`."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def machine() -> str:
    """Cores, CPU, Python and platform, for the report header."""
    return (
        f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {sys.version.split()[0]}, {platform.system()} {platform.release()}"
    )


def now() -> str:
    """The time of the run, for the report header."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
