"""User provisioning as stamped commands: each user converges on its newest command's state.

Every command first locks its person (the state row, in key order), then is applied by the
repository's merge statement, which compares stamps field by field, so the order in which jobs
run does not matter (docs/jobs.md, "Ordering"). A service call is one unit of work: all of its
commands are committed together, or none is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from worker.jobs.identity import identity_key
from worker.jobs.payloads import BulkUser, ProvisionUser, UpdateUser, UserRef, UserWithRole, WithPassword
from worker.jobs.stamps import Stamp
from worker.passwords.hashing import DesiredPassword
from worker.repositories.user import Applied, UserCommand
from worker.services.erasure import ErasureKeys
from worker.services.outcome import BatchOutcome, Status, UserOutcome
from worker.services.unit_of_work import UnitOfWork

REFUSED_ENTRY = (
    "as_of is older than TOMBSTONE_RETENTION by the database's clock, so it can no longer be ordered "
    "against deletes: send it again with a current as_of"
)


def user_command(
    function: str,
    user: UserRef | BulkUser,
    stamp: Stamp,
    erasure: ErasureKeys,
    *,
    hashed_password: str | None = None,
) -> UserCommand:
    """The merge statement's command for one validated user: a single-user job's payload, or a batch entry.

    A batch entry keeps its own as_of when it has one; otherwise the command takes the job's stamp.
    `hashed_password`, when given, replaces the payload's own hash (a sealed password, hashed).
    """
    role: str | None
    active: bool | None = None
    external_id: str | None = None
    if isinstance(user, UserRef):
        email, as_of = user.email, stamp.as_of
        role = user.role if isinstance(user, UserWithRole | UpdateUser) else None
        given_hash = user.password_hash if isinstance(user, WithPassword) else None
        if isinstance(user, ProvisionUser | UpdateUser):
            external_id = user.external_id
        if isinstance(user, UpdateUser):
            active = user.active
    else:
        email, role, as_of = user["email"], user["role"], user.get("as_of") or stamp.as_of
        given_hash = user.get("password_hash")
        external_id = user.get("external_id")
    key = identity_key(email)
    digest, old_digest = erasure.digests(key)
    return {
        "key": key,
        "email": email,
        "function": function,
        "role": role,
        "hashed_password": hashed_password if hashed_password is not None else given_hash,
        "active": active,
        "external_id": external_id,
        "as_of": as_of,
        "job_id": stamp.job_id,
        "digest": digest,
        "old_digest": old_digest,
    }


def bulk_commands(
    entries: Sequence[tuple[int, BulkUser]], stamp: Stamp, erasure: ErasureKeys
) -> list[tuple[int, UserCommand]]:
    """The commands of a `provision_users` batch with their entries' indexes, in entry order."""
    return [(index, user_command("provision_users", user, stamp, erasure)) for index, user in entries]


async def password_to_store(uow: UnitOfWork, email: str, password: DesiredPassword) -> str:
    """The hash a sealed password asks for: the stored one if it still verifies, else a fresh one.

    Runs before the command's transaction, in a short one of its own, so that no connection or
    row lock is held while argon2id works. Should the stored hash change meanwhile, the stamps
    still decide which command's password stands.
    """
    async with uow:
        current = await uow.users.get_user_by_key(identity_key(email))
        stored = current.hashed_password if current is not None else None
    replacement = await password.replacement_for(stored)
    if replacement is not None:
        return replacement
    assert stored is not None  # replacement_for keeps only a hash that exists
    return stored


async def apply_commands(
    uow: UnitOfWork, commands: Sequence[UserCommand], *, retention: float
) -> list[UserOutcome]:
    """Apply commands for distinct people in one transaction; one outcome each, in order.

    A command older than `retention` seconds by the database's clock comes back `refused` and
    changes nothing.
    """
    async with uow:
        rows = await uow.users.apply(commands, retention=retention)
        await uow.commit()
    return [_outcome(row) for row in rows]


async def apply_command(uow: UnitOfWork, command: UserCommand, *, retention: float) -> UserOutcome:
    """Apply one command in its own transaction."""
    (outcome,) = await apply_commands(uow, [command], retention=retention)
    return outcome


async def provision_users(
    uow: UnitOfWork,
    entries: Sequence[tuple[int, UserCommand]],
    rejected: list[dict[str, object]],
    *,
    retention: float,
) -> BatchOutcome:
    """Apply a batch's valid commands (distinct people) in one transaction; `rejected` is reported.

    Entries older than `retention` seconds by the database's clock join `rejected`.
    """
    commands = [command for _, command in entries]
    async with uow:
        counts = await uow.users.apply_counting(commands, retention=retention)
        await uow.commit()
    if counts.refused:
        rejected += [{"index": entries[position][0], "error": REFUSED_ENTRY} for position in counts.refused]
        rejected.sort(key=lambda rejection: int(str(rejection["index"])))
    return BatchOutcome(
        created=counts.created,
        updated=counts.updated,
        unchanged=counts.unchanged,
        superseded=counts.superseded,
        rejected=rejected,
    )


def _outcome(row: Applied) -> UserOutcome:
    status = cast(Status, row.status)  # the merge statement's statuses are exactly Status's
    if row.provisioned:
        return UserOutcome(
            status=status, email=row.email, user_id=row.user_id, role=row.role, is_active=row.is_active
        )
    return UserOutcome(status=status, email=row.email, user_id=row.user_id)
