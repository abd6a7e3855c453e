"""The unit of work: one transaction, committed explicitly, rolled back otherwise.

Services depend on the `UnitOfWork` protocol and the repository protocols it exposes, not on
SQLAlchemy: `SqlAlchemyUnitOfWork` is the one the worker uses, and fast service tests pass an
in-memory one that type-checks against the same protocol.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from sqlalchemy.ext.asyncio import AsyncSession

from worker.db.models import User, UserChange
from worker.db.session import SessionFactory, db_session
from worker.repositories.audit import AuditRepository
from worker.repositories.user import Applied, AppliedCounts, ExpiredIntent, UserCommand, UserRepository


class Users(Protocol):
    """The user queries the services run (`UserRepository` on PostgreSQL)."""

    async def get_user_by_email(self, email: str) -> User | None:
        """The provisioned user with this email in any letter case, or None."""
        ...

    async def apply(self, commands: Sequence[UserCommand]) -> list[Applied]:
        """Apply commands for distinct emails; a row each, in order."""
        ...

    async def apply_counting(self, commands: Sequence[UserCommand]) -> AppliedCounts:
        """As `apply`, reporting only the statuses' counts and the raced commands' indexes."""
        ...

    async def expire_intents(self, *, window: float, batch: int) -> list[ExpiredIntent]:
        """Drop up to `batch` set_user_role intents older than `window` seconds; which they were."""
        ...

    async def purge_tombstones(self, *, older_than: int, batch: int) -> int:
        """Delete up to `batch` tombstones with every stamp before `older_than` (µs); how many."""
        ...

    async def erase_stamps(self, email: str) -> int:
        """Delete the tombstone or intents of `email`; how many rows."""
        ...


class Audit(Protocol):
    """The audit-trail queries the services run (`AuditRepository` on PostgreSQL)."""

    async def history(self, email: str, *, limit: int = 1000) -> Sequence[UserChange]:
        """The audit rows of `email`, oldest command first."""
        ...

    async def purge_recorded_before(self, cutoff: datetime, *, batch: int) -> int:
        """Delete up to `batch` rows recorded before `cutoff`; how many."""
        ...

    async def erase(self, email: str) -> int:
        """Delete every row of `email`; how many."""
        ...


class UnitOfWork(Protocol):
    """Repositories over one transaction; leaving the block without `commit()` rolls back."""

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
    """The unit of work over one SQLAlchemy session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.users = UserRepository(session)
        self.audit = AuditRepository(session)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # After a commit this is a no-op; after an error it undoes everything the block wrote.
        await self.rollback()

    async def commit(self) -> None:
        """Make the block's writes permanent."""
        await self.session.commit()

    async def rollback(self) -> None:
        """Discard the block's writes."""
        await self.session.rollback()


@asynccontextmanager
async def open_unit_of_work(session_factory: SessionFactory) -> AsyncIterator[SqlAlchemyUnitOfWork]:
    """A unit of work over a session of its own from `session_factory`, closed afterwards."""
    async with db_session(session_factory) as session:
        yield SqlAlchemyUnitOfWork(session)
