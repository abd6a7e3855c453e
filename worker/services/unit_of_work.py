"""The unit of work: one transaction, committed explicitly, rolled back otherwise.

`async with uow:` opens it (a session of its own) and leaving the block rolls back whatever was not
committed, as in cosmicpython: callers hand services a unit of work that is not open yet, or a
factory of them, and the service decides where the transaction begins and ends.

Services depend on the `UnitOfWork` protocol and the repository protocols it exposes, not on
SQLAlchemy: `SqlAlchemyUnitOfWork` is the one the worker uses, and fast service tests pass an
in-memory one that type-checks against the same protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from sqlalchemy.ext.asyncio import AsyncSession

from worker.db.models import User, UserChange
from worker.repositories.audit import AuditRepository
from worker.repositories.user import Applied, AppliedCounts, ExpiredIntent, UserCommand, UserRepository


class Users(Protocol):
    """The user queries the services run (`UserRepository` on PostgreSQL)."""

    async def get_user_by_key(self, key: str) -> User | None:
        """The provisioned user with this identity key, or None."""
        ...

    async def lock(self, keys: Sequence[str]) -> None:
        """Lock each person's state row, creating the missing ones, in key order."""
        ...

    async def apply(self, commands: Sequence[UserCommand], *, retention: float) -> list[Applied]:
        """Lock the commands' people (one command each) in key order, then apply them; a row each."""
        ...

    async def apply_counting(self, commands: Sequence[UserCommand], *, retention: float) -> AppliedCounts:
        """As `apply`, reporting only the statuses' counts and the refused commands' indexes."""
        ...

    async def expire_intents(self, *, window: float, batch: int) -> list[ExpiredIntent]:
        """Mark up to `batch` unreported set_user_role intents older than `window` s; which they were."""
        ...

    async def purge_states(self, *, retention: float, batch: int) -> int:
        """Delete up to `batch` state rows of no user with every stamp older than `retention` s."""
        ...

    async def erase_state(self, key: str, digest: bytes, old_digest: bytes | None) -> int:
        """Move a locked person's stamp under `digest` and delete its state row; 1 if it held any."""
        ...


class Audit(Protocol):
    """The audit-trail queries the services run (`AuditRepository` on PostgreSQL)."""

    async def history(self, key: str, *, limit: int = 1000) -> Sequence[UserChange]:
        """The audit rows of an identity key, oldest command first."""
        ...

    async def purge_recorded_before(self, cutoff: datetime, *, batch: int) -> int:
        """Delete up to `batch` rows recorded before `cutoff`; how many."""
        ...

    async def erase(self, key: str) -> int:
        """Delete every row of an identity key; how many."""
        ...


class UnitOfWork(Protocol):
    """Repositories over one transaction: `async with uow:` opens it, leaving without `commit()` undoes it."""

    @property
    def users(self) -> Users:
        """The users."""
        ...

    @property
    def audit(self) -> Audit:
        """The audit trail."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def commit(self) -> None:
        """Make the block's writes permanent."""
        ...


class SqlAlchemyUnitOfWork:
    """The unit of work over a SQLAlchemy session: each `async with` takes one from `sessions`, and
    closes it on the way out (a session factory, or in tests a session inside the test's transaction)."""

    session: AsyncSession
    users: UserRepository
    audit: AuditRepository

    def __init__(self, sessions: Callable[[], AsyncSession]) -> None:
        self._sessions = sessions

    async def __aenter__(self) -> Self:
        self.session = self._sessions()
        self.users = UserRepository(self.session)
        self.audit = AuditRepository(self.session)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # After a commit the rollback is a no-op; after an error it undoes everything the block wrote.
        try:
            await self.rollback()
        finally:
            await self.session.close()

    async def commit(self) -> None:
        """Make the block's writes permanent."""
        await self.session.commit()

    async def rollback(self) -> None:
        """Discard the block's writes."""
        await self.session.rollback()
