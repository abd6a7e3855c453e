"""User provisioning as stamped commands: each user converges on its newest command's state.

Every command is applied by the repository's merge statement, which compares stamps field by
field, so the order in which jobs run does not matter (docs/jobs.md, "Ordering"). A service call
is one unit of work: all of its commands are committed together, or none is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from worker.jobs.errors import ConcurrentChange
from worker.jobs.payloads import BulkUser, ProvisionUser, UserRef, UserWithRole
from worker.jobs.stamps import Stamp
from worker.passwords.hashing import DesiredPassword
from worker.repositories.user import Applied, UserCommand
from worker.services.outcome import BatchOutcome, Status, UserOutcome
from worker.services.unit_of_work import UnitOfWork

# A command comes back `raced` when another transaction inserted its email's first row meanwhile;
# the next attempt finds and locks that row. More rounds than this mean something else is wrong.
MAX_ROUNDS = 3


def user_command(
    function: str, user: UserRef | BulkUser, stamp: Stamp, *, hashed_password: str | None = None
) -> UserCommand:
    """The merge statement's command for one validated user: a single-user job's payload, or a batch entry.

    A batch entry keeps its own as_of when it has one; otherwise the command takes the job's stamp.
    `hashed_password`, when given, replaces the payload's own hash (a sealed password, hashed).
    """
    role: str | None
    if isinstance(user, UserRef):
        email, as_of = user.email, stamp.as_of
        role = user.role if isinstance(user, UserWithRole) else None
        given_hash = user.password_hash if isinstance(user, ProvisionUser) else None
    else:
        email, role, as_of = user["email"], user["role"], user.get("as_of") or stamp.as_of
        given_hash = user.get("password_hash")
    return {
        "email": email,
        "function": function,
        "role": role,
        "hashed_password": hashed_password if hashed_password is not None else given_hash,
        "as_of": as_of,
        "job_id": stamp.job_id,
    }


def bulk_commands(entries: Sequence[tuple[int, BulkUser]], stamp: Stamp) -> list[UserCommand]:
    """The commands of a `provision_users` batch, in entry order."""
    return [user_command("provision_users", user, stamp) for _, user in entries]


async def password_to_store(uow: UnitOfWork, email: str, password: DesiredPassword) -> str:
    """The hash a sealed password asks for: the stored one if it still verifies, else a fresh one.

    Runs before the command's transaction, in a short one of its own, so that no connection or
    row lock is held while argon2id works. Should the stored hash change meanwhile, the stamps
    still decide which command's password stands.
    """
    async with uow:
        current = await uow.users.get_user_by_email(email)
        stored = current.hashed_password if current is not None else None
    replacement = await password.replacement_for(stored)
    if replacement is not None:
        return replacement
    assert stored is not None  # replacement_for keeps only a hash that exists
    return stored


async def apply_commands(uow: UnitOfWork, commands: Sequence[UserCommand]) -> list[UserOutcome]:
    """Apply commands for distinct emails in one transaction; one outcome each, in order."""
    outcomes: list[UserOutcome | None] = [None] * len(commands)
    todo = list(range(len(commands)))
    async with uow:
        for _ in range(MAX_ROUNDS):
            rows = await uow.users.apply([commands[i] for i in todo])
            todo_next = []
            for index, row in zip(todo, rows, strict=True):
                if row.raced:
                    todo_next.append(index)
                else:
                    outcomes[index] = _outcome(row)
            todo = todo_next
            if not todo:
                await uow.commit()
                return [outcome for outcome in outcomes if outcome is not None]
    raise ConcurrentChange(
        f"{len(todo)} command(s) kept racing other transactions for their row", raced=len(todo)
    )


async def apply_command(uow: UnitOfWork, command: UserCommand) -> UserOutcome:
    """Apply one command in its own transaction."""
    (outcome,) = await apply_commands(uow, [command])
    return outcome


async def provision_users(
    uow: UnitOfWork, commands: Sequence[UserCommand], rejected: list[dict[str, object]]
) -> BatchOutcome:
    """Apply a batch's valid commands (distinct emails) in one transaction; `rejected` is reported."""
    totals = [0, 0, 0, 0]
    todo = list(commands)
    async with uow:
        for _ in range(MAX_ROUNDS):
            if not todo:
                break
            counts = await uow.users.apply_counting(todo)
            for position, count in enumerate(counts[:4]):
                totals[position] += count
            todo = [todo[index] for index in counts.raced]
        else:
            raise ConcurrentChange(
                f"{len(todo)} batch entries kept racing other transactions for their row", raced=len(todo)
            )
        await uow.commit()
    created, updated, unchanged, superseded = totals
    return BatchOutcome(
        created=created, updated=updated, unchanged=unchanged, superseded=superseded, rejected=rejected
    )


def _outcome(row: Applied) -> UserOutcome:
    status = cast(Status, row.status)  # the merge statement's statuses are exactly Status's
    if row.provisioned:
        return UserOutcome(
            status=status, email=row.email, user_id=row.user_id, role=row.role, is_active=row.is_active
        )
    return UserOutcome(status=status, email=row.email, user_id=row.user_id)
