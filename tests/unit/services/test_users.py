"""Service rules against an in-memory unit of work: no database, just the commit/rollback contract."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType

import pytest

from worker.db.models import User, UserChange
from worker.jobs.identity import identity_key
from worker.repositories.user import Applied, AppliedCounts, ExpiredIntent, UserCommand
from worker.services import users

RETENTION = 3600.0


def command(email: str) -> UserCommand:
    return {
        "key": identity_key(email),
        "email": email,
        "function": "provision_user",
        "role": "admin",
        "hashed_password": None,
        "as_of": 1,
        "job_id": "j",
        "digest": None,
        "old_digest": None,
        "active": None,
        "external_id": None,
    }


def applied(email: str, status: str = "created", *, provisioned: bool = True) -> Applied:
    if not provisioned:
        return Applied(status, None, email, False, None, False)
    return Applied(status, 1, email, True, "admin", True)


@dataclass
class ScriptedUsers:
    """Answers each `apply` call with the next scripted rows, and records what it was asked, in order."""

    answers: deque[list[Applied]] = field(default_factory=deque)
    batches: deque[AppliedCounts] = field(default_factory=deque)
    calls: list[tuple[str, object]] = field(default_factory=list)
    failure: Exception | None = None

    async def get_user_by_key(self, key: str) -> User | None:
        return None

    async def lock(self, keys: Sequence[str]) -> None:
        self.calls.append(("lock", list(keys)))

    async def apply(self, commands: Sequence[UserCommand], *, retention: float) -> list[Applied]:
        self.calls.append(("apply", ([c["email"] for c in commands], retention)))
        if self.failure is not None:
            raise self.failure
        return self.answers.popleft()

    async def apply_counting(self, commands: Sequence[UserCommand], *, retention: float) -> AppliedCounts:
        self.calls.append(("apply_counting", ([c["email"] for c in commands], retention)))
        return self.batches.popleft()

    async def expire_intents(self, *, window: float, batch: int) -> list[ExpiredIntent]:
        return []

    async def purge_states(self, *, retention: float, batch: int) -> int:
        return 0

    async def erase_state(self, key: str, digest: bytes, old_digest: bytes | None) -> int:
        return 0


class EmptyAudit:
    """An audit trail with no rows."""

    async def history(self, key: str, *, limit: int = 1000) -> Sequence[UserChange]:
        return []

    async def purge_recorded_before(self, cutoff: datetime, *, batch: int) -> int:
        return 0

    async def erase(self, key: str) -> int:
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


async def test_commands_are_applied_in_one_call_and_committed_once() -> None:
    uow = FakeUnitOfWork()
    uow.users.answers.append(
        [applied("B@x.io"), applied("a@x.io", "pending", provisioned=False), applied("c@x.io", "unchanged")]
    )
    outcomes = await users.apply_commands(
        uow, [command("B@x.io"), command("a@x.io"), command("c@x.io")], retention=RETENTION
    )
    assert [o.as_result() for o in outcomes] == [
        {"status": "created", "email": "B@x.io", "user_id": 1, "role": "admin", "is_active": True},
        {"status": "pending", "email": "a@x.io"},  # no user: no role or is_active reported
        {"status": "unchanged", "email": "c@x.io", "user_id": 1, "role": "admin", "is_active": True},
    ]
    assert uow.users.calls == [("apply", (["B@x.io", "a@x.io", "c@x.io"], RETENTION))]
    assert uow.committed == 1


async def test_a_failing_merge_commits_nothing_and_rolls_back() -> None:
    uow = FakeUnitOfWork()
    uow.users.failure = RuntimeError("the database refused")
    with pytest.raises(RuntimeError, match="the database refused"):
        await users.apply_command(uow, command("a@x.io"), retention=RETENTION)
    assert (uow.committed, uow.rolled_back) == (0, 1)


async def test_a_batch_reports_its_refused_entries_by_index_among_the_rejected() -> None:
    uow = FakeUnitOfWork()
    uow.users.batches.append(AppliedCounts(1, 1, 0, 0, [1]))
    rejected: list[dict[str, object]] = [{"index": 4, "error": "email: duplicate of entry 0"}]
    entries = [(0, command("a@x.io")), (3, command("b@x.io")), (5, command("c@x.io"))]

    outcome = await users.provision_users(uow, entries, rejected, retention=RETENTION)

    assert uow.users.calls == [("apply_counting", (["a@x.io", "b@x.io", "c@x.io"], RETENTION))]
    assert (outcome.created, outcome.updated, outcome.unchanged, outcome.superseded) == (1, 1, 0, 0)
    assert outcome.rejected == [
        {"index": 3, "error": users.REFUSED_ENTRY},  # the second command: the batch's entry 3
        {"index": 4, "error": "email: duplicate of entry 0"},
    ]
    assert uow.committed == 1
