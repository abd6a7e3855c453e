"""Queries on `User`; the caller's session, never a commit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, TypedDict, Unpack

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert

from worker.db.models import Role, User
from worker.repositories.base import BaseRepository

# One statement for a whole batch: unnest the columns, insert, and on a case-insensitive email
# conflict update only rows that differ. RETURNING lists the rows written; (xmax = 0) is true for
# rows this statement inserted and false for rows it updated (PostgreSQL sets xmax on update).
_ON_EMAIL_CONFLICT = """
    ON CONFLICT (lower(email)) DO UPDATE
    SET role = EXCLUDED.role,
        hashed_password = COALESCE(EXCLUDED.hashed_password, users.hashed_password),
        is_active = true,
        updated_at = now()
    WHERE users.role IS DISTINCT FROM EXCLUDED.role
       OR (EXCLUDED.hashed_password IS NOT NULL
           AND users.hashed_password IS DISTINCT FROM EXCLUDED.hashed_password)
       OR NOT users.is_active
"""
_UNNEST_COLUMNS = "unnest(CAST(:emails AS varchar[]), CAST(:roles AS varchar[]), CAST(:hashes AS varchar[]))"

_UPSERT_MANY = text(
    f"""
    WITH written AS (
        INSERT INTO users (email, role, hashed_password)
        SELECT email, role, hashed_password
        FROM {_UNNEST_COLUMNS} AS batch(email, role, hashed_password)
        ORDER BY lower(email)
        {_ON_EMAIL_CONFLICT}
        RETURNING (xmax = 0) AS inserted
    )
    SELECT count(*) FILTER (WHERE inserted) AS created, count(*) FILTER (WHERE NOT inserted) AS updated
    FROM written
    """  # noqa: S608 - constant SQL fragments, no input
)


# The same upsert, for a group of single-user jobs that share one statement (group commit): one
# row back per input row, in input order, with the user's state and what happened to it. Rows the
# upsert left alone are read from the statement's snapshot; a row inserted by another transaction
# after that snapshot comes back with a NULL id, and its job must run again.
_PROVISION_GROUP = text(
    f"""
    WITH batch AS (
        SELECT email, role, hashed_password, position
        FROM {_UNNEST_COLUMNS} WITH ORDINALITY AS batch(email, role, hashed_password, position)
    ),
    written AS (
        INSERT INTO users (email, role, hashed_password)
        SELECT email, role, hashed_password FROM batch ORDER BY lower(email)
        {_ON_EMAIL_CONFLICT}
        RETURNING id, email, role, is_active, (xmax = 0) AS inserted
    )
    SELECT coalesce(w.id, u.id) AS id, coalesce(w.email, u.email) AS email,
           coalesce(w.role, u.role) AS role, coalesce(w.is_active, u.is_active) AS is_active,
           CASE WHEN w.id IS NULL THEN 'unchanged' WHEN w.inserted THEN 'created' ELSE 'updated' END AS status
    FROM batch b
    LEFT JOIN written w ON lower(w.email) = lower(b.email)
    LEFT JOIN users u ON lower(u.email) = lower(b.email)
    ORDER BY b.position
    """  # noqa: S608 - constant SQL fragments, no input
)


class ProvisionedRow(NamedTuple):
    """One group member's user after the group's statement (id None: run that job again)."""

    id: int | None
    email: str | None
    role: str | None
    is_active: bool | None
    status: str


class UpsertCounts(NamedTuple):
    """Rows a batch upsert wrote; the rest of the batch already held."""

    created: int
    updated: int


class UserSpec(TypedDict):
    """A user as a batch states it."""

    email: str
    role: Role
    hashed_password: str | None


class UserChanges(TypedDict, total=False):
    """Fields `update_user` may change."""

    email: str
    role: Role
    hashed_password: str | None
    is_active: bool


def _columns(specs: Sequence[UserSpec]) -> dict[str, list[str | None]]:
    """The parameters of `_UNNEST_COLUMNS`: one array per column, in the order of `specs`."""
    return {
        "emails": [spec["email"] for spec in specs],
        "roles": [spec["role"].value for spec in specs],
        "hashes": [spec["hashed_password"] for spec in specs],
    }


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

    async def upsert_users(self, specs: Sequence[UserSpec]) -> UpsertCounts:
        """Ensure every spec holds, in one statement; how many rows it inserted and updated.

        Emails must be distinct (case-insensitively). Rows are written in email order, so that
        concurrent batches lock rows in the same order and cannot deadlock each other.
        """
        result = await self.session.execute(_UPSERT_MANY, _columns(specs))
        return UpsertCounts(*result.one())

    async def provision_group(self, specs: Sequence[UserSpec]) -> list[ProvisionedRow]:
        """Upsert a group of users (distinct emails) in one statement; one row back per spec, in order."""
        result = await self.session.execute(_PROVISION_GROUP, _columns(specs))
        return [ProvisionedRow(*row) for row in result]

    async def list_users(self, *, limit: int = 100, offset: int = 0) -> Sequence[User]:
        """A page of users in id order."""
        return await self.list(limit=limit, offset=offset)
