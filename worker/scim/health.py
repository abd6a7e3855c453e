"""GET /healthz, unauthenticated: 200 when PostgreSQL and Redis both answer, 503 otherwise."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.client import ProvisioningClient

CHECK_TIMEOUT = 2.0
"""Seconds each dependency gets to answer."""


async def check(engine: AsyncEngine, client: ProvisioningClient) -> dict[str, Any]:
    """{"database": bool, "redis": bool, "ok": bool}: whether each answers."""
    database = await _answers(_select_one(engine))
    redis = await _answers(client.redis.ping())
    return {"database": database, "redis": redis, "ok": database and redis}


async def _select_one(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def _answers(probe: Any) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await probe
    except Exception:
        return False
    return True
