"""A small generic repository: the session it is given, and no commits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from worker.db.models import Base

ModelT = TypeVar("ModelT", bound=Base)


class BaseRepository(Generic[ModelT]):
    """CRUD for one model on a caller-owned `AsyncSession`; flushes, never commits."""

    model: type[ModelT]

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, id_: Any) -> ModelT | None:
        """The row with this primary key, or None."""
        return await self.session.get(self.model, id_)

    async def get_one_or_none(self, statement: Select[ModelT]) -> ModelT | None:
        """The single row `statement` selects, or None."""
        result = await self.session.execute(statement)
        return result.scalar_one_or_none()

    async def add(self, obj: ModelT, *, flush: bool = True) -> ModelT:
        """Add `obj` to the session; flush so that database defaults and constraints apply now."""
        self.session.add(obj)
        if flush:
            await self.session.flush()
        return obj

    async def list(self, *, limit: int = 100, offset: int = 0) -> Sequence[ModelT]:
        """A page of rows in primary-key order."""
        pk = self.model.__mapper__.primary_key
        statement = select(self.model).order_by(*pk).limit(limit).offset(offset)
        result = await self.session.execute(statement)
        return result.scalars().all()

    async def delete(self, obj: ModelT, *, flush: bool = True) -> None:
        """Delete `obj`; flushed at once unless told otherwise."""
        await self.session.delete(obj)
        if flush:
            await self.session.flush()
