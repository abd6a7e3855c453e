"""Service rules against an in-memory unit of work: no database, just the commit/rollback contract."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import pytest

from worker.db.models import Role, User
from worker.errors import UserNotFound
from worker.payloads import DeleteUser, ProvisionUser, SetUserRole
from worker.services import users


class FakeUsers:
    def __init__(self) -> None:
        self.rows: dict[str, User] = {}

    async def get_user_by_email(self, email: str, *, for_update: bool = False) -> User | None:
        return self.rows.get(email.lower())

    async def create_user_if_absent(
        self, *, email: str, role: Role, hashed_password: str | None = None
    ) -> User:
        user = User(
            id=len(self.rows) + 1, email=email, role=role, hashed_password=hashed_password, is_active=True
        )
        self.rows[email.lower()] = user
        return user

    async def update_user(self, user: User, **changes: Any) -> User:
        for name, value in changes.items():
            setattr(user, name, value)
        return user

    async def delete_user(self, user: User) -> None:
        del self.rows[user.email.lower()]


@dataclass
class FakeUnitOfWork:
    users: FakeUsers = field(default_factory=FakeUsers)
    committed: int = 0
    rolled_back: int = 0

    async def __aenter__(self) -> FakeUnitOfWork:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.rolled_back += 1

    async def commit(self) -> None:
        self.committed += 1


async def test_provision_commits_once() -> None:
    uow = FakeUnitOfWork()
    outcome = await users.provision_user(uow, ProvisionUser(email="a@example.com", role="admin"))  # type: ignore[arg-type]
    assert outcome.status == "created"
    assert uow.committed == 1


async def test_missing_user_is_not_committed() -> None:
    uow = FakeUnitOfWork()
    with pytest.raises(UserNotFound):
        await users.set_user_role(uow, SetUserRole(email="a@example.com", role="admin"))  # type: ignore[arg-type]
    assert uow.committed == 0


async def test_delete_result_names_the_deleted_user() -> None:
    uow = FakeUnitOfWork()
    await users.provision_user(uow, ProvisionUser(email="a@example.com", role="viewer"))  # type: ignore[arg-type]
    outcome = await users.delete_user(uow, DeleteUser(email="A@example.com"))  # type: ignore[arg-type]
    assert outcome.as_result() == {"status": "deleted", "email": "a@example.com", "user_id": 1}
    assert uow.users.rows == {}
