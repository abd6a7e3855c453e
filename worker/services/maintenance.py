"""Housekeeping the worker's cron jobs run: expiring intents, purging tombstones and old audit rows.

Each batch is its own transaction (one `async with uow:` block), so a long purge never holds many
row locks, and a worker stopped halfway leaves nothing half done: the next run carries on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from worker.jobs.emails import email_key
from worker.repositories.user import ExpiredIntent
from worker.services.erasure import ErasureKeys
from worker.services.unit_of_work import UnitOfWork

PURGE_BATCH = 5000
"""Rows deleted per transaction."""

ReportExpired = Callable[[list[ExpiredIntent]], Awaitable[None]]


async def expire_intents(
    uow: UnitOfWork, report: ReportExpired, *, window: float, batch: int = 1000
) -> list[ExpiredIntent]:
    """Report set_user_role intents older than `window` seconds, once each; they are kept.

    A provision arriving later still applies the intent (the newest role wins), and the purge
    removes it with the tombstones. `report` runs inside the transaction: if it fails, nothing
    is marked, and the next run reports the same intents again.
    """
    async with uow:
        expired = await uow.users.expire_intents(window=window, batch=batch)
        if expired:
            await report(expired)
        await uow.commit()
    return expired


async def purge_tombstones(
    uow: UnitOfWork, *, retention: float, deadline: float, clock: Callable[[], float]
) -> int:
    """Delete tombstones, intents and erased stamps older than `retention` s, until `deadline`.

    The cut-off is the one the merge refuses stamps by, read under the same row locks, so no
    command that was accepted can meet a tombstone that is gone.
    """
    return await _in_batches(
        uow,
        lambda uow: uow.users.purge_states(retention=retention, batch=PURGE_BATCH),
        deadline=deadline,
        clock=clock,
    )


async def purge_audit(
    uow: UnitOfWork, *, retention: float, deadline: float, clock: Callable[[], float]
) -> int:
    """Delete audit rows recorded more than `retention` seconds ago, until `deadline`."""
    cutoff = datetime.now(UTC) - timedelta(seconds=retention)
    return await _in_batches(
        uow,
        lambda uow: uow.audit.purge_recorded_before(cutoff, batch=PURGE_BATCH),
        deadline=deadline,
        clock=clock,
    )


async def _in_batches(
    uow: UnitOfWork,
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
        async with uow:
            deleted = await delete_batch(uow)
            await uow.commit()
        total += deleted
        if deleted < PURGE_BATCH:
            break
    return total


async def erase(uow: UnitOfWork, email: str, erasure: ErasureKeys) -> tuple[int, int] | None:
    """Forget a person who is no user: (state rows, audit rows) removed; None while the user exists.

    The person's state row is locked first, as every command locks it, so nothing can provision
    them meanwhile. Its newest stamp stays under a digest of the identity key (no email, no key):
    an older command that arrives later is still superseded as by a delete.
    """
    if not erasure.configured:
        raise ErasureNotConfigured()
    key = email_key(email)
    digest, old_digest = erasure.digests(key)
    assert digest is not None  # configured
    async with uow:
        await uow.users.lock([key])
        if await uow.users.get_user_by_key(key) is not None:
            return None
        states = await uow.users.erase_state(key, digest, old_digest)
        audit = await uow.audit.erase(key)
        await uow.commit()
    return states, audit


class ErasureNotConfigured(Exception):
    """`erase` needs ERASURE_KEYS, to keep the erased person's stamp without their email."""

    def __init__(self) -> None:
        super().__init__(
            "erase needs ERASURE_KEYS (a secret of 32+ characters, such as `python -m worker new-seal-key` "
            "prints): "
            "without it the erased person's stamps could not be kept, and an older command still queued "
            "would bring them back"
        )
