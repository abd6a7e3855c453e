"""UserRepository on real PostgreSQL, inside a rolled-back transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from worker.db.models import Role, User
from worker.jobs.identity import KEY_VERSION, identity_key
from worker.jobs.stamps import MICROS, now_micros
from worker.passwords.policy import hash_password
from worker.repositories.user import Applied, ExpiredIntent, UserCommand, UserRepository

DAY = 24 * 3600
RETENTION = 30 * DAY
T0 = now_micros()  # commands are stamped T0 + a few µs: well inside RETENTION


@pytest.fixture
def users(db_session: AsyncSession) -> UserRepository:
    return UserRepository(db_session)


def _command(
    function: str, email: str, as_of: int, role: str | None = None, password_hash: str | None = None
) -> UserCommand:
    return {
        "key": identity_key(email),
        "email": email,
        "function": function,
        "role": role,
        "hashed_password": password_hash,
        "as_of": as_of,
        "job_id": f"{function}-{as_of}",
        "digest": None,
        "old_digest": None,
        "active": None,
        "external_id": None,
    }


async def _apply(
    users: UserRepository, commands: Sequence[UserCommand], *, retention: float = RETENTION
) -> list[Applied]:
    """What every service does: lock the people, then merge under the locks."""
    await users.lock([c["key"] for c in commands])
    return await users.apply(commands, retention=retention)


async def test_a_provision_writes_a_users_row_and_the_person_s_state(
    users: UserRepository, db_session: AsyncSession
) -> None:
    (created,) = await _apply(users, [_command("provision_user", "Ada@example.com", T0 + 1, "admin")])

    row = (await db_session.execute(text("SELECT id, key, email, role, is_active FROM users"))).one()
    assert row == (created.user_id, "ada@example.com", "Ada@example.com", "admin", True)
    state = (
        await db_session.execute(
            text("SELECT key, key_version, role, provisioned_as_of, pending_since FROM user_states")
        )
    ).one()
    assert state == ("ada@example.com", KEY_VERSION, None, T0 + 1, None)  # no role kept here: it has a user


async def test_get_user_by_key_finds_every_spelling_and_returns_every_field(
    users: UserRepository, db_session: AsyncSession
) -> None:
    password_hash = hash_password("correct horse")
    (created,) = await _apply(
        users, [_command("provision_user", "Grace@Example.com", T0 + 1, "member", password_hash)]
    )
    db_session.expunge_all()  # read back from the database, not the identity map

    for spelling in ("grace@example.com", "GRACE@EXAMPLE.COM", "Grace@Example.com"):
        found = await users.get_user_by_key(identity_key(spelling))
        assert found is not None
        assert found.id == created.user_id
        assert found.key == "grace@example.com"
        assert found.email == "Grace@Example.com"
        assert found.role is Role.MEMBER
        assert found.hashed_password == password_hash
        assert found.is_active is True
        now = datetime.now(UTC)
        assert now - timedelta(minutes=5) < found.created_at <= now
        assert found.updated_at == found.created_at


async def test_get_user_by_key_returns_none_when_absent(users: UserRepository) -> None:
    assert await users.get_user_by_key(identity_key("nobody@example.com")) is None


async def test_a_newer_command_updates_the_row_and_bumps_updated_at(
    users: UserRepository, db_session: AsyncSession
) -> None:
    (created,) = await _apply(users, [_command("provision_user", "up@example.com", T0 + 1, "viewer")])
    # now() is the transaction's start time: move created_at back so the bump is visible.
    await db_session.execute(
        text(
            "UPDATE users SET created_at = now() - interval '1 hour', updated_at = now() - interval '1 hour'"
        )
    )

    await _apply(users, [_command("set_user_role", "up@example.com", T0 + 2, "admin")])
    await _apply(users, [_command("deactivate_user", "UP@example.com", T0 + 3)])
    db_session.expunge_all()

    row = (await db_session.execute(select(User).where(User.key == "up@example.com"))).scalar_one()
    assert (row.id, row.role, row.is_active, row.hashed_password) == (
        created.user_id,
        Role.ADMIN,
        False,
        None,
    )
    assert row.updated_at > row.created_at


async def test_a_delete_removes_the_users_row_and_keeps_the_tombstone(
    users: UserRepository, db_session: AsyncSession
) -> None:
    await _apply(users, [_command("provision_user", "gone@example.com", T0 + 1, "member")])
    (deleted,) = await _apply(users, [_command("delete_user", "gone@example.com", T0 + 2)])
    assert deleted.status == "deleted"
    assert (await db_session.execute(text("SELECT count(*) FROM users"))).scalar_one() == 0
    tombstone = (await db_session.execute(text("SELECT key, provisioned_as_of FROM user_states"))).one()
    assert tombstone == ("gone@example.com", T0 + 2)


@pytest.mark.parametrize("second", ["dup@example.com", "DUP@Example.COM"])
async def test_the_database_keeps_one_users_row_per_identity_key(
    users: UserRepository, db_session: AsyncSession, second: str
) -> None:
    await _apply(users, [_command("provision_user", "dup@example.com", T0 + 1, "member")])
    with pytest.raises(IntegrityError, match="uq_users_key"):
        await db_session.execute(
            text("INSERT INTO users (key, email, role) VALUES (:k, :e, 'member')"),
            {"k": identity_key(second), "e": second},
        )


async def test_a_users_row_needs_its_person_s_state_row(db_session: AsyncSession) -> None:
    with pytest.raises(IntegrityError, match="fk_users_key_user_states"):
        await db_session.execute(
            text("INSERT INTO users (key, email, role) VALUES ('s@example.com', 's@example.com', 'member')")
        )


async def test_unknown_role_is_rejected_by_the_database(
    users: UserRepository, db_session: AsyncSession
) -> None:
    await users.lock(["r@example.com"])
    with pytest.raises(IntegrityError, match="ck_users_role"):
        await db_session.execute(
            text("INSERT INTO users (key, email, role) VALUES ('r@example.com', 'r@example.com', 'owner')")
        )


async def test_tombstones_and_intents_leave_no_users_row(
    users: UserRepository, db_session: AsyncSession
) -> None:
    statuses = await _apply(
        users,
        [
            _command("delete_user", "tomb@example.com", T0 + 5),
            _command("set_user_role", "i@example.com", T0 + 5, "admin"),
        ],
    )
    assert [s.status for s in statuses] == ["absent", "pending"]
    assert await users.get_user_by_key("tomb@example.com") is None
    assert await users.get_user_by_key("i@example.com") is None
    assert (await db_session.execute(text("SELECT count(*) FROM users"))).scalar_one() == 0
    states = await db_session.execute(text("SELECT key, role FROM user_states ORDER BY key"))
    assert [tuple(r) for r in states] == [("i@example.com", "admin"), ("tomb@example.com", None)]


async def test_expired_intents_are_returned_once_and_kept(
    users: UserRepository, db_session: AsyncSession
) -> None:
    await _apply(
        users,
        [
            _command("delete_user", "x@example.com", T0 + 1),
            _command("set_user_role", "y@example.com", T0 + 3, "viewer"),
        ],
    )
    await _apply(users, [_command("set_user_role", "x@example.com", T0 + 2, "admin")])
    assert await users.expire_intents(window=60, batch=10) == []  # not old enough yet
    await db_session.execute(
        text("UPDATE user_states SET pending_since = pending_since - interval '2 minutes'")
    )

    expired = await users.expire_intents(window=60, batch=10)

    assert sorted(expired) == [
        ExpiredIntent("x@example.com", "admin", T0 + 2, f"set_user_role-{T0 + 2}"),
        ExpiredIntent("y@example.com", "viewer", T0 + 3, f"set_user_role-{T0 + 3}"),
    ]
    assert await users.expire_intents(window=60, batch=10) == []
    rows = await db_session.execute(
        text("SELECT key, role, role_as_of, intent_reported FROM user_states ORDER BY key")
    )
    assert [tuple(r) for r in rows] == [
        ("x@example.com", "admin", T0 + 2, True),
        ("y@example.com", "viewer", T0 + 3, True),
    ]  # kept: a provision that comes later still applies the role
    (late,) = await _apply(users, [_command("provision_user", "y@example.com", T0 + 1, "member")])
    assert (late.status, late.role) == ("created", "viewer")


async def test_purge_removes_only_states_of_no_user_with_every_stamp_older_than_retention(
    users: UserRepository, db_session: AsyncSession
) -> None:
    now = now_micros()
    old, recent = now - 5 * DAY * MICROS, now - DAY * MICROS // 2
    await _apply(
        users,
        [
            _command("delete_user", "old@example.com", old),
            _command("delete_user", "new@example.com", recent),
            _command("provision_user", "user@example.com", old, "member"),
            _command("delete_user", "old2@example.com", old),
            _command("set_user_role", "intent@example.com", old, "admin"),  # not reported yet
        ],
    )
    await _apply(users, [_command("deactivate_user", "old@example.com", recent)])  # a newer stamp on it
    await db_session.execute(
        text(
            "INSERT INTO erased_stamps (digest, as_of, job_id) "
            "VALUES ('\\x01', :old, 'a'), ('\\x02', :new, 'b')"
        ),
        {"old": old, "new": recent},
    )

    assert await users.purge_states(retention=DAY, batch=10) == 2  # old2's state, the old erased stamp

    remaining = await db_session.scalars(text("SELECT key FROM user_states ORDER BY key"))
    assert list(remaining) == ["intent@example.com", "new@example.com", "old@example.com", "user@example.com"]
    assert list(await db_session.scalars(text("SELECT job_id FROM erased_stamps"))) == ["b"]
    assert await users.purge_states(retention=DAY, batch=10) == 0


async def test_a_batch_is_planned_for_its_own_arrays_for_its_transaction_only(engine: AsyncEngine) -> None:
    show = text("SHOW plan_cache_mode")
    async with AsyncSession(engine) as session:
        assert (await session.execute(show)).scalar_one() == "force_generic_plan"
        counts = await UserRepository(session).apply_counting(
            [_command("provision_user", "ada@example.com", T0 + 1, "admin")], retention=RETENTION
        )
        assert counts.created == 1
        assert (await session.execute(show)).scalar_one() == "auto"
        await session.rollback()
        assert (await session.execute(show)).scalar_one() == "force_generic_plan"


async def test_repository_never_commits(engine: AsyncEngine, users: UserRepository) -> None:
    await _apply(users, [_command("provision_user", "uncommitted@example.com", T0 + 1, "member")])
    # A second connection sees nothing: the rows only live in the test's open transaction.
    async with engine.connect() as other:
        count = (
            await other.execute(
                text("SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM user_states)")
            )
        ).scalar_one()
    assert count == 0
