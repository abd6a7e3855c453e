"""Service rules against an in-memory unit of work: no database, just the commit/rollback contract."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType

import pytest

from worker.db.models import User, UserChange
from worker.jobs.errors import ConcurrentChange
from worker.repositories.user import Applied, AppliedCounts, ExpiredIntent, UserCommand
from worker.services import users


def command(email: str) -> UserCommand:
    return {
        "email": email,
        "function": "provision_user",
        "role": "admin",
        "hashed_password": None,
        "as_of": 1,
        "job_id": "j",
    }


def applied(email: str, *, raced: bool = False) -> Applied:
    return Applied(raced, "created", 1, email, True, "admin", True)


@dataclass
class ScriptedUsers:
    """Answers each `apply` call with the next scripted rows, and records what it was asked."""

    answers: deque[list[Applied]] = field(default_factory=deque)
    batches: deque[AppliedCounts] = field(default_factory=deque)
    asked: list[list[str]] = field(default_factory=list)

    async def get_user_by_email(self, email: str) -> User | None:
        return None

    async def apply(self, commands: Sequence[UserCommand]) -> list[Applied]:
        self.asked.append([c["email"] for c in commands])
        return self.answers.popleft()

    async def apply_counting(self, commands: Sequence[UserCommand]) -> AppliedCounts:
        self.asked.append([c["email"] for c in commands])
        return self.batches.popleft()

    async def expire_intents(self, *, window: float, batch: int) -> list[ExpiredIntent]:
        return []

    async def purge_tombstones(self, *, older_than: int, batch: int) -> int:
        return 0

    async def erase_stamps(self, email: str) -> int:
        return 0


class EmptyAudit:
    """An audit trail with no rows."""

    async def history(self, email: str, *, limit: int = 1000) -> Sequence[UserChange]:
        return []

    async def purge_recorded_before(self, cutoff: datetime, *, batch: int) -> int:
        return 0

    async def erase(self, email: str) -> int:
        return 0


@dataclass
class FakeUnitOfWork:
    users: ScriptedUsers = field(default_factory=ScriptedUsers)
    audit: EmptyAudit = field(default_factory=EmptyAudit)
    committed: int = 0
    rolled_back: int = 0

    async def __aenter__(self) -> FakeUnitOfWork:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.rolled_back += 1

    async def commit(self) -> None:
        self.committed += 1


async def test_raced_commands_are_applied_again_in_the_same_transaction() -> None:
    uow = FakeUnitOfWork()
    uow.users.answers.extend(
        [[applied("a@x.io"), applied("b@x.io", raced=True), applied("c@x.io")], [applied("b@x.io")]]
    )
    outcomes = await users.apply_commands(uow, [command("a@x.io"), command("b@x.io"), command("c@x.io")])
    assert [o.email for o in outcomes] == ["a@x.io", "b@x.io", "c@x.io"]
    assert uow.users.asked == [["a@x.io", "b@x.io", "c@x.io"], ["b@x.io"]]
    assert uow.committed == 1


async def test_a_command_that_keeps_racing_is_retried_later_and_nothing_is_committed() -> None:
    uow = FakeUnitOfWork()
    uow.users.answers.extend([[applied("a@x.io", raced=True)]] * users.MAX_ROUNDS)
    with pytest.raises(ConcurrentChange):
        await users.apply_commands(uow, [command("a@x.io")])
    assert (uow.committed, uow.rolled_back) == (0, 1)


async def test_a_batch_applies_its_raced_entries_again_and_adds_up_the_counts() -> None:
    uow = FakeUnitOfWork()
    uow.users.batches.extend([AppliedCounts(1, 1, 0, 0, [2]), AppliedCounts(0, 1, 0, 0, [])])
    outcome = await users.provision_users(uow, [command(f"{n}@x.io") for n in "abc"], rejected=[])
    assert uow.users.asked == [["a@x.io", "b@x.io", "c@x.io"], ["c@x.io"]]
    assert (outcome.created, outcome.updated, uow.committed) == (1, 2, 1)
