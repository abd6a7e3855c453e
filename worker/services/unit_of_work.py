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
