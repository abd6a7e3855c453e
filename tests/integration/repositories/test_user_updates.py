"""update_user and external ids in the merge statement, on real PostgreSQL (rolled back)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import permutations
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from worker.jobs.identity import identity_key
from worker.jobs.stamps import now_micros
from worker.passwords.policy import hash_password
from worker.repositories.user import Applied, UserCommand, UserRepository

RETENTION = 30 * 24 * 3600
T0 = now_micros()
EMAIL = "upd@example.com"
_HASH = hash_password("correct horse battery")


@pytest.fixture
def users(db_session: AsyncSession) -> UserRepository:
    return UserRepository(db_session)


def _command(function: str, as_of: int, **fields: Any) -> UserCommand:
    return {
        "key": identity_key(EMAIL),
        "email": EMAIL,
        "function": function,
        "role": fields.get("role"),
        "hashed_password": fields.get("password_hash"),
        "as_of": T0 + as_of,
        "job_id": f"{function}-{as_of}",
        "digest": None,
        "old_digest": None,
        "active": fields.get("active"),
        "external_id": fields.get("external_id"),
    }


def provision(as_of: int, role: str = "member", **fields: Any) -> UserCommand:
    return _command("provision_user", as_of, role=role, **fields)


def update(as_of: int, **fields: Any) -> UserCommand:
    return _command("update_user", as_of, **fields)


async def _apply(users: UserRepository, *commands: UserCommand) -> list[Applied]:
    """Each command in its own statement, in the order given (as jobs would run)."""
    applied = []
    for command in commands:
        await users.lock([command["key"]])
        applied += await users.apply([command], retention=RETENTION)
    return applied


async def _row(session: AsyncSession) -> tuple[Any, ...] | None:
    result = await session.execute(
        text("SELECT role, is_active, external_id, hashed_password FROM users WHERE key = :key"),
        {"key": identity_key(EMAIL)},
    )
    row = result.one_or_none()
    return tuple(row) if row is not None else None


async def _audit(session: AsyncSession) -> list[tuple[str, str]]:
    result = await session.execute(text("SELECT function, status FROM user_changes ORDER BY as_of"))
    return [(row[0], row[1]) for row in result]


async def test_an_update_changes_only_the_fields_it_names(
    users: UserRepository, db_session: AsyncSession
) -> None:
    await _apply(users, provision(1, "viewer", external_id="00u1"))
    (applied,) = await _apply(users, update(2, role="admin"))
    assert (applied.status, applied.role, applied.is_active) == ("updated", "admin", True)
    assert await _row(db_session) == ("admin", True, "00u1", None)

    (applied,) = await _apply(users, update(3, external_id="00u2"))
    assert applied.status == "updated"
    assert await _row(db_session) == ("admin", True, "00u2", None)


async def test_reactivating_keeps_a_role_changed_meanwhile(
    users: UserRepository, db_session: AsyncSession
) -> None:
    """Reactivation names only `active`: a concurrent role change, older or newer, survives it."""
    await _apply(users, provision(1, "viewer"), _command("deactivate_user", 2))
    # The role change (stamp 4) runs first, the reactivation (stamp 3) second: both fields survive.
    await _apply(users, update(4, role="admin"), update(3, active=True))
    assert await _row(db_session) == ("admin", True, None, None)


async def test_an_older_update_loses_field_by_field(users: UserRepository, db_session: AsyncSession) -> None:
    await _apply(users, provision(1, "viewer"), update(5, role="admin"))
    (applied,) = await _apply(users, update(3, role="member", active=False))
    assert applied.status == "updated"  # active (stamp 1) was older than 3: it applies; role does not
    assert await _row(db_session) == ("admin", False, None, None)
    (applied,) = await _apply(users, update(2, role="member", active=True))
    assert applied.status == "superseded"
    assert await _row(db_session) == ("admin", False, None, None)


@pytest.mark.parametrize("order", list(permutations(range(4))))
async def test_any_run_order_ends_in_the_newest_state(
    users: UserRepository, db_session: AsyncSession, order: Sequence[int]
) -> None:
    commands = [
        provision(1, "viewer", external_id="a"),
        update(2, active=False, external_id="b"),
        update(3, role="admin"),
        update(4, active=True),
    ]
    # An update that runs before the provision waits (its job tries again): run those again after.
    ran = await _apply(users, *(commands[i] for i in order))
    again = [commands[i] for i, applied in zip(order, ran, strict=True) if applied.status == "waiting"]
    await _apply(users, *again)
    assert await _row(db_session) == ("admin", True, "b", None)


async def test_an_update_before_any_provision_waits_and_writes_nothing(
    users: UserRepository, db_session: AsyncSession
) -> None:
    (applied,) = await _apply(users, update(2, role="admin", active=False))
    assert applied.status == "waiting"
    assert await _row(db_session) is None
    assert await _audit(db_session) == []  # the retried job records its outcome once, under its id
    stamps = await db_session.execute(
        text("SELECT role_as_of, active_as_of, external_id_as_of FROM user_states WHERE key = :key"),
        {"key": identity_key(EMAIL)},
    )
    assert tuple(stamps.one()) == (0, 0, 0)
    await _apply(users, provision(1, "viewer"))
    (applied,) = await _apply(users, update(2, role="admin", active=False))
    assert applied.status == "updated"
    assert await _row(db_session) == ("admin", False, None, None)


async def test_an_update_older_than_a_delete_is_superseded(
    users: UserRepository, db_session: AsyncSession
) -> None:
    await _apply(users, provision(1), _command("delete_user", 5))
    (older,) = await _apply(users, update(3, role="admin"))
    assert older.status == "superseded"
    (newer,) = await _apply(users, update(6, role="admin"))
    assert newer.status == "waiting"
    assert await _row(db_session) is None


async def test_a_delete_clears_the_external_id_and_a_new_provision_sets_its_own(
    users: UserRepository, db_session: AsyncSession
) -> None:
    await _apply(users, provision(1, external_id="old"), _command("delete_user", 2))
    await _apply(users, provision(3))
    assert await _row(db_session) == ("member", True, None, None)
    await _apply(users, provision(4, external_id="new"))
    assert await _row(db_session) == ("member", True, "new", None)


async def test_an_unchanged_update_writes_no_audit_row_a_change_writes_one(
    users: UserRepository, db_session: AsyncSession
) -> None:
    await _apply(users, provision(1, "viewer"))
    (same,) = await _apply(users, update(2, role="viewer", active=True))
    assert same.status == "unchanged"
    (changed,) = await _apply(users, update(3, role="admin"))
    assert changed.status == "updated"
    assert await _audit(db_session) == [("provision_user", "created"), ("update_user", "updated")]


async def test_an_update_sets_a_password_hash(users: UserRepository, db_session: AsyncSession) -> None:
    await _apply(users, provision(1))
    password_hash = hash_password("correct horse battery")
    (applied,) = await _apply(users, update(2, password_hash=password_hash))
    assert applied.status == "updated"
    assert await _row(db_session) == ("member", True, None, password_hash)
    changed = await db_session.scalar(
        text("SELECT password_changed FROM user_changes WHERE function = 'update_user'")
    )
    assert changed is True


async def test_an_external_id_keeps_its_letter_case(users: UserRepository, db_session: AsyncSession) -> None:
    await _apply(users, provision(1, external_id="00uAbC"))
    (applied,) = await _apply(users, update(2, external_id="00uabc"))
    assert applied.status == "updated"  # case-exact: another id
    assert await _row(db_session) == ("member", True, "00uabc", None)


@pytest.mark.parametrize("order", list(permutations(range(4))))
@pytest.mark.parametrize("reprovision_at", [25, 40])
async def test_an_update_newer_than_a_delete_survives_it_in_any_run_order(
    users: UserRepository, db_session: AsyncSession, order: Sequence[int], reprovision_at: int
) -> None:
    """The update's fields outlive the users row an older delete removes (the state row keeps them),
    so a later provision brings them back as if the commands had run in stamp order."""
    password_hash = _HASH
    commands = [
        provision(10, "viewer"),
        update(30, active=True, external_id="X", password_hash=password_hash),
        _command("delete_user", 20),
        provision(reprovision_at, "member"),
    ]
    ran = await _apply(users, *(commands[i] for i in order))
    again = [commands[i] for i, applied in zip(order, ran, strict=True) if applied.status == "waiting"]
    await _apply(users, *again)
    assert await _row(db_session) == ("member", True, "X", password_hash)


async def test_a_delete_newer_than_the_update_resets_its_fields(
    users: UserRepository, db_session: AsyncSession
) -> None:
    await _apply(
        users, provision(10), update(20, external_id="X", password_hash=_HASH), _command("delete_user", 30)
    )
    state = await db_session.execute(
        text("SELECT is_active, hashed_password, external_id FROM user_states WHERE key = :key"),
        {"key": identity_key(EMAIL)},
    )
    assert tuple(state.one()) == (False, None, None)
    await _apply(users, provision(40))
    assert await _row(db_session) == ("member", True, None, None)


async def test_a_hash_kept_by_the_state_row_is_no_password_change_in_the_audit_trail(
    users: UserRepository, db_session: AsyncSession
) -> None:
    await _apply(users, provision(10), update(30, password_hash=_HASH), _command("delete_user", 20))
    await _apply(users, _command("set_user_role", 40, role="admin"))  # still no user: pending
    changed = await db_session.execute(
        text("SELECT function, status, password_changed FROM user_changes WHERE function <> 'provision_user'")
    )
    assert sorted(tuple(row) for row in changed) == [
        ("delete_user", "deleted", True),  # the users row, and its hash, went
        ("set_user_role", "pending", False),
        ("update_user", "updated", True),
    ]
