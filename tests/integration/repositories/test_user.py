"""UserRepository on real PostgreSQL, inside a rolled-back transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from worker.db.models import Role, User
from worker.passwords.policy import hash_password
from worker.repositories.user import ExpiredIntent, UserCommand, UserRepository


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


def _command(function: str, email: str, as_of: int, role: str | None = None) -> UserCommand:
    return {
        "email": email,
        "function": function,
        "role": role,
        "hashed_password": None,
        "as_of": as_of,
        "job_id": f"{function}-{as_of}",
    }


async def test_rows_that_are_no_user_are_hidden_from_lookups(users: UserRepository) -> None:
    await users.apply(
        [
            _command("delete_user", "tomb@example.com", 5),
            _command("set_user_role", "i@example.com", 5, "admin"),
        ]
    )
    assert await users.get_user_by_email("tomb@example.com") is None
    assert await users.get_user_by_email("i@example.com") is None
    assert list(await users.list_users()) == []


async def test_a_second_command_for_a_row_in_one_call_comes_back_raced(users: UserRepository) -> None:
    first, second = await users.apply(
        [
            _command("provision_user", "twice@example.com", 1, "viewer"),
            _command("set_user_role", "TWICE@example.com", 2, "admin"),
        ]
    )
    assert (first.raced, first.status, second.raced) == (False, "created", True)
    (again,) = await users.apply([_command("set_user_role", "TWICE@example.com", 2, "admin")])
    assert (again.raced, again.status, again.role) == (False, "updated", "admin")


async def test_expired_intents_are_reset_and_returned_once(
    users: UserRepository, db_session: AsyncSession
) -> None:
    await users.apply(
        [_command("delete_user", "x@example.com", 1), _command("set_user_role", "y@example.com", 3, "viewer")]
    )
    await users.apply([_command("set_user_role", "x@example.com", 2, "admin")])
    assert await users.expire_intents(window=60, batch=10) == []  # not old enough yet
    await db_session.execute(text("UPDATE users SET pending_since = pending_since - interval '2 minutes'"))

    expired = await users.expire_intents(window=60, batch=10)

    assert sorted(expired) == [
        ExpiredIntent("x@example.com", "admin", 2, "set_user_role-2"),
        ExpiredIntent("y@example.com", "viewer", 3, "set_user_role-3"),
    ]
    assert await users.expire_intents(window=60, batch=10) == []
    rows = (await db_session.execute(text("SELECT email, role, role_as_of FROM users ORDER BY email"))).all()
    assert [tuple(r) for r in rows] == [
        ("x@example.com", None, 1),
        ("y@example.com", None, 0),
    ]  # back to the delete's stamp


async def test_purge_removes_only_rows_that_are_no_user_and_entirely_older(
    users: UserRepository, db_session: AsyncSession
) -> None:
    await users.apply(
        [
            _command("delete_user", "old@example.com", 10),
            _command("delete_user", "new@example.com", 30),
            _command("provision_user", "user@example.com", 10, "member"),
        ]
    )
    await users.apply([_command("deactivate_user", "old@example.com", 40)])  # a newer stamp on the tombstone
    await users.apply([_command("delete_user", "old2@example.com", 10)])
    assert await users.purge_tombstones(older_than=20, batch=10) == 1
    remaining = await db_session.scalars(text("SELECT email FROM users ORDER BY email"))
    assert list(remaining) == ["new@example.com", "old@example.com", "user@example.com"]


async def test_repository_never_commits(engine: AsyncEngine, users: UserRepository) -> None:
    await users.create_user(email="uncommitted@example.com", role=Role.MEMBER)
    # A second connection sees nothing: the row only lives in the test's open transaction.
    async with engine.connect() as other:
        count = (await other.execute(text("SELECT count(*) FROM users"))).scalar_one()
    assert count == 0
