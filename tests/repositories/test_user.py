"""UserRepository on real PostgreSQL, inside a rolled-back transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from worker.db.models import Role, User
from worker.repositories.user import UserRepository
from worker.security import hash_password


@pytest.fixture
def users(db_session: AsyncSession) -> UserRepository:
    return UserRepository(db_session)


async def test_create_user_writes_a_row(users: UserRepository, db_session: AsyncSession) -> None:
    user = await users.create_user(email="ada@example.com", role=Role.ADMIN)

    row = (await db_session.execute(text("SELECT id, email, role, is_active FROM users"))).one()
    assert row == (user.id, "ada@example.com", "admin", True)


async def test_get_user_by_email_ignores_letter_case_and_returns_every_field(
    users: UserRepository, db_session: AsyncSession
) -> None:
    password_hash = hash_password("correct horse")
    created = await users.create_user(
        email="Grace@Example.com", role=Role.MEMBER, hashed_password=password_hash
    )
    db_session.expunge_all()  # read back from the database, not the identity map

    for spelling in ("grace@example.com", "GRACE@EXAMPLE.COM", "Grace@Example.com"):
        found = await users.get_user_by_email(spelling)
        assert found is not None
        assert found.id == created.id
        assert found.email == "Grace@Example.com"
        assert found.role is Role.MEMBER
        assert found.hashed_password == password_hash
        assert found.is_active is True
        now = datetime.now(UTC)
        assert now - timedelta(minutes=5) < found.created_at <= now
        assert found.updated_at == found.created_at


async def test_get_user_by_email_and_id_return_none_when_absent(users: UserRepository) -> None:
    assert await users.get_user_by_email("nobody@example.com") is None
    assert await users.get_user_by_id(987654321) is None


async def test_get_user_by_id(users: UserRepository) -> None:
    created = await users.create_user(email="id@example.com", role=Role.VIEWER)
    assert (await users.get_user_by_id(created.id)) is created


async def test_update_user_persists_changes_and_bumps_updated_at(
    users: UserRepository, db_session: AsyncSession
) -> None:
    user = await users.create_user(email="up@example.com", role=Role.VIEWER)
    # now() is the transaction's start time: move created_at back so the bump is visible.
    await db_session.execute(
        text(
            "UPDATE users SET created_at = now() - interval '1 hour', updated_at = now() - interval '1 hour'"
        )
    )

    await users.update_user(user, role=Role.ADMIN, is_active=False, hashed_password=None)
    db_session.expunge_all()

    row = (await db_session.execute(select(User).where(User.id == user.id))).scalar_one()
    assert (row.role, row.is_active, row.hashed_password) == (Role.ADMIN, False, None)
    assert row.updated_at > row.created_at


async def test_delete_user_removes_the_row(users: UserRepository, db_session: AsyncSession) -> None:
    user = await users.create_user(email="gone@example.com", role=Role.MEMBER)
    await users.delete_user(user)
    count = (await db_session.execute(text("SELECT count(*) FROM users"))).scalar_one()
    assert count == 0


async def test_list_users_pages_in_id_order(users: UserRepository) -> None:
    created = [await users.create_user(email=f"u{i}@example.com", role=Role.MEMBER) for i in range(5)]
    first = await users.list_users(limit=3)
    rest = await users.list_users(limit=3, offset=3)
    assert [u.id for u in first] + [u.id for u in rest] == [u.id for u in created]


@pytest.mark.parametrize("second", ["dup@example.com", "DUP@Example.COM"])
async def test_duplicate_email_is_rejected_by_the_database(
    users: UserRepository, db_session: AsyncSession, second: str
) -> None:
    await users.create_user(email="dup@example.com", role=Role.MEMBER)
    with pytest.raises(IntegrityError, match="uq_users_email_lower"):
        await db_session.execute(text("INSERT INTO users (email, role) VALUES (:e, 'member')"), {"e": second})


async def test_unknown_role_is_rejected_by_the_database(db_session: AsyncSession) -> None:
    with pytest.raises(IntegrityError, match="ck_users_role"):
        await db_session.execute(text("INSERT INTO users (email, role) VALUES ('r@example.com', 'owner')"))


async def test_create_user_if_absent_returns_none_for_an_existing_email(users: UserRepository) -> None:
    first = await users.create_user_if_absent(email="once@example.com", role=Role.MEMBER)
    second = await users.create_user_if_absent(email="ONCE@example.com", role=Role.ADMIN)
    assert first is not None
    assert first.role is Role.MEMBER
    assert second is None


async def test_repository_never_commits(engine, users: UserRepository) -> None:  # type: ignore[no-untyped-def]
    await users.create_user(email="uncommitted@example.com", role=Role.MEMBER)
    # A second connection sees nothing: the row only lives in the test's open transaction.
    async with engine.connect() as other:
        count = (await other.execute(text("SELECT count(*) FROM users"))).scalar_one()
    assert count == 0
