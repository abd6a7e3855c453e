"""Queries on `User`; the caller's session, never a commit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict, Unpack

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from worker.db.models import Role, User
from worker.repositories.base import BaseRepository


class UserChanges(TypedDict, total=False):
    """Fields `update_user` may change."""

    email: str
    role: Role
    hashed_password: str | None
    is_active: bool


class UserRepository(BaseRepository[User]):
    """Users, looked up by id or by email in any letter case."""

    model = User

    async def create_user(
        self, *, email: str, role: Role, hashed_password: str | None = None, is_active: bool = True
    ) -> User:
        """Insert a user; a second user with the same email (any case) raises `IntegrityError`."""
        user = User(email=email, role=role, hashed_password=hashed_password, is_active=is_active)
        return await self.add(user)

    async def create_user_if_absent(
        self, *, email: str, role: Role, hashed_password: str | None = None
    ) -> User | None:
        """Insert a user unless one with this email exists (or is being inserted); None when it did not."""
        statement = (
            insert(User)
            .values(email=email, role=role, hashed_password=hashed_password)
            .on_conflict_do_nothing(index_elements=[func.lower(User.email)])
            .returning(User)
        )
        result = await self.session.scalars(statement, execution_options={"populate_existing": True})
        return result.one_or_none()

    async def get_user_by_id(self, user_id: int) -> User | None:
        """The user with this id, or None."""
        return await self.get(user_id)

    async def get_user_by_email(self, email: str, *, for_update: bool = False) -> User | None:
        """The user with this email in any letter case, or None; `for_update` locks the row."""
        statement = select(User).where(func.lower(User.email) == func.lower(email))
        if for_update:
            statement = statement.with_for_update()
        return await self.get_one_or_none(statement)

    async def update_user(self, user: User, **changes: Unpack[UserChanges]) -> User:
        """Apply `changes` to `user` and flush them."""
        for field, value in changes.items():
            setattr(user, field, value)
        await self.session.flush()
        return user

    async def delete_user(self, user: User) -> None:
        """Delete `user` and flush."""
        await self.delete(user)

    async def list_users(self, *, limit: int = 100, offset: int = 0) -> Sequence[User]:
        """A page of users in id order."""
        return await self.list(limit=limit, offset=offset)
