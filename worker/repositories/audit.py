"""The audit trail (`user_changes`): read by email, purged by age, erased on request; never committed here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, tuple_

from worker.db.models import UserChange
from worker.jobs.stamps import MICROS
from worker.repositories.base import BaseRepository


def change_record(change: UserChange) -> dict[str, Any]:
    """One audit row as JSON-ready data (`as_of` also as an RFC 3339 time)."""
    return {
        "email": change.email,
        "user_id": change.user_id,
        "job_id": change.job_id,
        "function": change.function,
        "as_of": change.as_of,
        "as_of_time": datetime.fromtimestamp(change.as_of / MICROS, UTC).isoformat(timespec="microseconds")
        if change.as_of
        else "",
        "status": change.status,
        "changes": change.changes,
        "recorded_at": change.recorded_at.isoformat(timespec="seconds"),
    }


class AuditRepository(BaseRepository[UserChange]):
    """Command outcomes, one row per job and email (the merge statement writes them)."""

    model = UserChange

    async def history(self, key: str, *, limit: int = 1000) -> Sequence[UserChange]:
        """A person's recorded outcomes (by identity key) in stamp order, oldest first."""
        statement = (
            select(UserChange)
            .where(UserChange.email_key == key)
            .order_by(UserChange.as_of, UserChange.job_id)
            .limit(limit)
        )
        return (await self.session.scalars(statement)).all()

    async def purge_recorded_before(self, cutoff: datetime, *, batch: int) -> int:
        """Delete up to `batch` rows recorded before `cutoff`; how many went."""
        doomed = (
            select(UserChange.email_key, UserChange.job_id)
            .where(UserChange.recorded_at < cutoff)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        result = await self.session.execute(
            delete(UserChange).where(tuple_(UserChange.email_key, UserChange.job_id).in_(doomed))
        )
        return int(result.rowcount)  # type: ignore[attr-defined]  # CursorResult of a DELETE

    async def erase(self, key: str) -> int:
        """Delete every row of a person (by identity key); how many went."""
        result = await self.session.execute(delete(UserChange).where(UserChange.email_key == key))
        return int(result.rowcount)  # type: ignore[attr-defined]  # CursorResult of a DELETE
