"""The service's reads of `users`: parameterised statements only, never a write."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from worker.db.models import User


def user_id_of(text: str) -> int | None:
    """The users.id a resource id names, or None when it names none (404)."""
    if not text.isdigit() or len(text) > 18:
        return None
    return int(text)


async def page_of_users(
    session: AsyncSession, where: ColumnElement[bool] | None, *, offset: int, limit: int
) -> tuple[int, Sequence[User]]:
    """(how many users match, the page of them from `offset`), ordered by id."""
    count = select(func.count()).select_from(User)
    page = select(User).order_by(User.id).offset(offset).limit(limit)
    if where is not None:
        count, page = count.where(where), page.where(where)
    total = int(await session.scalar(count) or 0)
    if limit == 0 or offset >= total:
        return total, []
    return total, (await session.scalars(page)).all()
