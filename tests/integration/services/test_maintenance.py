"""The worker's cron jobs on real PostgreSQL: tombstones and audit rows purged when old enough."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from worker import tasks
from worker.db.session import SessionFactory
from worker.jobs.identity import identity_key
from worker.jobs.stamps import MICROS, now_micros
from worker.runtime.context import WorkerContext
from worker.services import maintenance, users
from worker.services.unit_of_work import SqlAlchemyUnitOfWork
from worker.settings import Settings

DAY = 24 * 3600
RETENTION = 30 * DAY  # the settings' TOMBSTONE_RETENTION


async def _apply(sessions: SessionFactory, function: str, email: str, as_of: int) -> None:
    """Apply a command, accepting stamps up to 50 days old (the purge keeps only 30)."""
    outcome = await users.apply_command(
        SqlAlchemyUnitOfWork(sessions),
        {
            "key": identity_key(email),
            "email": email,
            "function": function,
            "role": "member" if function == "provision_user" else None,
            "hashed_password": None,
            "as_of": as_of,
            "job_id": f"{function}-{email}",
            "digest": None,
            "old_digest": None,
            "active": None,
            "external_id": None,
        },
        retention=50 * DAY,
    )
    assert outcome.status != "refused"


async def test_purge_removes_old_tombstones_and_old_audit_rows_only(
    settings: Settings, engine: AsyncEngine, committing_sessions: SessionFactory
) -> None:
    now = now_micros()
    await _apply(committing_sessions, "delete_user", "old@example.com", now - 31 * DAY * MICROS)
    await _apply(committing_sessions, "delete_user", "recent@example.com", now - 29 * DAY * MICROS)
    await _apply(committing_sessions, "provision_user", "user@example.com", now - 40 * DAY * MICROS)
    async with engine.begin() as conn:  # one audit row from long ago
        await conn.execute(
            text(
                "UPDATE user_changes SET recorded_at = now() - interval '400 days' "
                "WHERE email = 'user@example.com'"
            )
        )
    assert settings.tombstone_retention == RETENTION
    ctx: WorkerContext = {"settings": settings, "session_factory": committing_sessions}

    assert await tasks.purge_expired(ctx) == {"tombstones": 1, "audit_rows": 1}
    assert await tasks.purge_expired(ctx) == {"tombstones": 0, "audit_rows": 0}

    async with engine.connect() as conn:
        states = list(await conn.scalars(text("SELECT key FROM user_states ORDER BY key")))
        rows = list(await conn.scalars(text("SELECT email FROM users ORDER BY email")))
        audited = list(await conn.scalars(text("SELECT email FROM user_changes ORDER BY email")))
    assert states == ["recent@example.com", "user@example.com"]  # a user's state stays, however old
    assert rows == ["user@example.com"]
    assert audited == ["old@example.com", "recent@example.com"]


async def test_a_purge_stops_at_its_deadline_and_the_next_run_carries_on(
    committing_sessions: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = now_micros()
    for n in range(3):
        await _apply(committing_sessions, "delete_user", f"t{n}@example.com", now - 31 * DAY * MICROS)
    monkeypatch.setattr(maintenance, "PURGE_BATCH", 1)
    ticks = iter([0.0, 0.0, 99.0])  # time for two batches, then the deadline has passed

    uow = SqlAlchemyUnitOfWork(committing_sessions)
    assert (
        await maintenance.purge_tombstones(uow, retention=RETENTION, deadline=1.0, clock=lambda: next(ticks))
        == 2
    )
    assert await maintenance.purge_tombstones(uow, retention=RETENTION, deadline=1.0, clock=lambda: 0.0) == 1
