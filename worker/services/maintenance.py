"""Housekeeping the worker's cron jobs run: expiring intents, purging tombstones and old audit rows.

Each batch is its own unit of work, so a long purge never holds many row locks, and a worker
stopped halfway leaves nothing half done: the next run carries on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta

from worker.repositories.user import ExpiredIntent
from worker.services.unit_of_work import UnitOfWork

PURGE_BATCH = 5000
"""Rows deleted per transaction."""

ReportExpired = Callable[[list[ExpiredIntent]], Awaitable[None]]
UnitsOfWork = Callable[[], AbstractAsyncContextManager[UnitOfWork]]
"""Opens a unit of work over a fresh session, and closes the session afterwards."""


async def expire_intents(
    uow: UnitOfWork, report: ReportExpired, *, window: float, batch: int = 1000
) -> list[ExpiredIntent]:
    """Drop set_user_role intents older than `window` seconds, after `report` has recorded them.

    `report` runs inside the transaction: if it fails, nothing is dropped, and the next run
    reports the same intents again.
    """
    async with uow:
        expired = await uow.users.expire_intents(window=window, batch=batch)
        if expired:
            await report(expired)
        await uow.commit()
    return expired


async def purge_tombstones(
    new_uow: UnitsOfWork, *, older_than: int, deadline: float, clock: Callable[[], float]
) -> int:
    """Delete tombstones and stale intents with every stamp before `older_than` (µs), until `deadline`."""
    return await _in_batches(
        new_uow,
        lambda uow: uow.users.purge_tombstones(older_than=older_than, batch=PURGE_BATCH),
        deadline=deadline,
        clock=clock,
    )


async def purge_audit(
    new_uow: UnitsOfWork, *, retention: float, deadline: float, clock: Callable[[], float]
) -> int:
    """Delete audit rows recorded more than `retention` seconds ago, until `deadline`."""
    cutoff = datetime.now(UTC) - timedelta(seconds=retention)
    return await _in_batches(
        new_uow,
        lambda uow: uow.audit.purge_recorded_before(cutoff, batch=PURGE_BATCH),
        deadline=deadline,
        clock=clock,
    )


async def _in_batches(
    new_uow: UnitsOfWork,
    delete_batch: Callable[[UnitOfWork], Awaitable[int]],
    *,
    deadline: float,
    clock: Callable[[], float],
) -> int:
    """Run `delete_batch` in a transaction each until it deletes less than a batch or `deadline` passes.

    What is left at the deadline waits for the next run.
    """
    total = 0
    while clock() < deadline:
        async with new_uow() as uow, uow:
            deleted = await delete_batch(uow)
            await uow.commit()
        total += deleted
        if deleted < PURGE_BATCH:
            break
    return total


async def erase(uow: UnitOfWork, email: str) -> tuple[int, int] | None:
    """Remove `email` from tombstones, intents and the audit trail: (stamp rows, audit rows) removed.

    None, and nothing removed, while a provisioned user has this email: delete it first.
    """
    async with uow:
        if await uow.users.get_user_by_email(email) is not None:
            return None
        stamps = await uow.users.erase_stamps(email)
        audit = await uow.audit.erase(email)
        await uow.commit()
    return stamps, audit
