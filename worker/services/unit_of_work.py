"""The unit of work: one transaction, committed explicitly, rolled back otherwise."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncSession

from worker.repositories.audit import AuditRepository
from worker.repositories.user import UserRepository


class UnitOfWork:
    """Repositories over one session; leaving the block without `commit()` rolls back."""

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
