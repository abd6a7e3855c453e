"""Read-only looks at the test database, for asserting what the worker wrote."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def provisioned_users(engine: AsyncEngine) -> dict[str, tuple[str, bool, str | None]]:
    """Every provisioned user by email: (role, is_active, hashed_password)."""
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT email, role, is_active, hashed_password FROM users"))
        return {row.email: (row.role, row.is_active, row.hashed_password) for row in rows}


EMPTY_TABLES = text("TRUNCATE users, user_states, erased_stamps, user_changes RESTART IDENTITY")
"""Empties every table the worker writes, between tests that commit."""
