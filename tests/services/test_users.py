"""Provisioning services on real PostgreSQL: idempotency, rollback, concurrency."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from worker.db.models import Role, User
from worker.db.session import SessionFactory
from worker.errors import UserNotFound
from worker.payloads import DeactivateUser, DeleteUser, ProvisionUser, SetUserRole
from worker.repositories.user import UserChanges
from worker.security import hash_password
from worker.services import users
from worker.services.unit_of_work import UnitOfWork


async def _rows(session: AsyncSession) -> list[tuple[str, str, bool, str | None]]:
    result = await session.execute(
        text("SELECT email, role, is_active, hashed_password FROM users ORDER BY id")
    )
    return [tuple(row) for row in result]  # type: ignore[misc]


async def test_provision_creates_then_reports_unchanged(db_session: AsyncSession) -> None:
    command = ProvisionUser(email="ada@example.com", role="admin")

    first = await users.provision_user(UnitOfWork(db_session), command)
    second = await users.provision_user(UnitOfWork(db_session), command)

    assert first.status == "created"
    assert second.status == "unchanged"
    assert second.user_id == first.user_id
    assert await _rows(db_session) == [("ada@example.com", "admin", True, None)]


async def test_provision_matches_email_in_any_case(db_session: AsyncSession) -> None:
    await users.provision_user(UnitOfWork(db_session), ProvisionUser(email="Ada@Example.com", role="admin"))
    again = await users.provision_user(
        UnitOfWork(db_session), ProvisionUser(email="ADA@example.com", role="admin")
    )
    assert again.status == "unchanged"
    assert again.email == "Ada@example.com"  # the first spelling is kept (domain lowered by validation)
    assert len(await _rows(db_session)) == 1


async def test_provision_updates_role_password_and_reactivates(db_session: AsyncSession) -> None:
    uow = UnitOfWork(db_session)
    await users.provision_user(uow, ProvisionUser(email="b@example.com", role="viewer"))
    await users.deactivate_user(uow, DeactivateUser(email="b@example.com"))
    password_hash = hash_password("s3cret-passphrase")

    outcome = await users.provision_user(
        uow, ProvisionUser(email="b@example.com", role="member", password_hash=password_hash)
    )

    assert outcome.status == "updated"
    assert await _rows(db_session) == [("b@example.com", "member", True, password_hash)]
    # Without a password_hash the stored one is kept, and nothing changes.
    kept = await users.provision_user(uow, ProvisionUser(email="b@example.com", role="member"))
    assert kept.status == "unchanged"
    assert (await _rows(db_session))[0][3] == password_hash


async def test_set_user_role_is_idempotent(db_session: AsyncSession) -> None:
    uow = UnitOfWork(db_session)
    await users.provision_user(uow, ProvisionUser(email="c@example.com", role="viewer"))
    assert (
        await users.set_user_role(uow, SetUserRole(email="C@example.com", role="admin"))
    ).status == "updated"
    assert (
        await users.set_user_role(uow, SetUserRole(email="c@example.com", role="admin"))
    ).status == "unchanged"
    assert await _rows(db_session) == [("c@example.com", "admin", True, None)]


async def test_set_user_role_of_an_absent_user_fails_and_writes_nothing(db_session: AsyncSession) -> None:
    with pytest.raises(UserNotFound, match=r"no user with email ghost@example\.com: provision it first"):
        await users.set_user_role(
            UnitOfWork(db_session), SetUserRole(email="ghost@example.com", role="admin")
        )
    assert await _rows(db_session) == []


async def test_deactivate_user_is_idempotent_and_absent_is_fine(db_session: AsyncSession) -> None:
    uow = UnitOfWork(db_session)
    await users.provision_user(uow, ProvisionUser(email="d@example.com", role="member"))
    assert (await users.deactivate_user(uow, DeactivateUser(email="d@example.com"))).status == "updated"
    assert (await users.deactivate_user(uow, DeactivateUser(email="d@example.com"))).status == "unchanged"
    assert (await users.deactivate_user(uow, DeactivateUser(email="x@example.com"))).status == "absent"
    assert await _rows(db_session) == [("d@example.com", "member", False, None)]


async def test_delete_user_twice_deletes_then_reports_absent(db_session: AsyncSession) -> None:
    uow = UnitOfWork(db_session)
    created = await users.provision_user(uow, ProvisionUser(email="e@example.com", role="member"))
    deleted = await users.delete_user(uow, DeleteUser(email="E@EXAMPLE.COM"))
    absent = await users.delete_user(uow, DeleteUser(email="e@example.com"))
    assert (deleted.status, deleted.user_id) == ("deleted", created.user_id)
    assert absent.as_result() == {"status": "absent", "email": "e@example.com"}
    assert await _rows(db_session) == []


class FailingUpdates(UnitOfWork):
    """A real unit of work whose update fails after its write reached the database."""

    def __init__(self, session: AsyncSession) -> None:
        super().__init__(session)
        real_update = self.users.update_user

        async def update_then_fail(user: User, **changes: UserChanges) -> User:
            await real_update(user, **changes)  # type: ignore[arg-type]
            raise RuntimeError("simulated failure after the UPDATE was flushed")

        self.users.update_user = update_then_fail  # type: ignore[method-assign]


async def test_a_failing_service_rolls_back_everything_it_wrote(db_session: AsyncSession) -> None:
    await users.provision_user(UnitOfWork(db_session), ProvisionUser(email="f@example.com", role="viewer"))

    with pytest.raises(RuntimeError, match="simulated failure"):
        await users.provision_user(
            FailingUpdates(db_session),
            ProvisionUser(email="f@example.com", role="admin", password_hash=hash_password("pw-123456")),
        )

    db_session.expunge_all()
    assert await _rows(db_session) == [("f@example.com", "viewer", True, None)]


async def test_concurrent_provisioning_of_one_email_creates_exactly_one_user(
    committing_sessions: SessionFactory,
) -> None:
    spellings = ["race@example.com", "RACE@example.com", "Race@Example.com", "race@EXAMPLE.com"] * 4

    async def provision(email: str) -> str:
        async with committing_sessions() as session:
            outcome = await users.provision_user(
                UnitOfWork(session), ProvisionUser(email=email, role="member")
            )
            return outcome.status

    statuses = await asyncio.gather(*(provision(email) for email in spellings))

    assert sorted(statuses) == ["created"] + ["unchanged"] * (len(spellings) - 1)
    async with committing_sessions() as session:
        count = await session.scalar(select(func.count()).select_from(User))
        roles = await session.scalars(select(User.role))
    assert count == 1
    assert list(roles) == [Role.MEMBER]


async def test_concurrent_provisioning_with_different_roles_converges(
    committing_sessions: SessionFactory,
) -> None:
    roles = ["admin", "member", "viewer"] * 4

    async def provision(role: str) -> str:
        async with committing_sessions() as session:
            command = ProvisionUser(email="converge@example.com", role=role)  # type: ignore[arg-type]
            return (await users.provision_user(UnitOfWork(session), command)).status

    statuses = await asyncio.gather(*(provision(role) for role in roles))

    assert statuses.count("created") == 1
    assert set(statuses) <= {"created", "updated", "unchanged"}
    async with committing_sessions() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 1
