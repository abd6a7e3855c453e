"""Declarative, idempotent user provisioning: each call states the end state it ensures."""

from __future__ import annotations

from collections.abc import Sequence

from worker.db.models import ROLES, User
from worker.errors import UserNotFound
from worker.passwords import DesiredPassword, GivenHash
from worker.payloads import BulkUser, DeactivateUser, DeleteUser, ProvisionUser, SetUserRole
from worker.repositories.user import UserChanges, UserSpec
from worker.retries import TransientError
from worker.services.outcome import BatchOutcome, UserOutcome
from worker.services.unit_of_work import UnitOfWork


class ConcurrentChange(TransientError):
    """Another job changed this user under us in a way a fresh run resolves (it is retried)."""


async def provision_user(
    uow: UnitOfWork, command: ProvisionUser, password: DesiredPassword | None = None
) -> UserOutcome:
    """Ensure an active user with this email and role exists, with `password` when one is given.

    Without `password`, a `password_hash` in the command is the password; with neither, any stored
    password is kept. Password work (argon2id) happens before the transaction, so no connection
    or row lock is held while it runs.
    """
    if password is None and command.password_hash is not None:
        password = GivenHash(command.password_hash)
    stored_hash: str | None = None
    new_hash: str | None = None
    if password is not None:
        async with uow:
            current = await uow.users.get_user_by_email(command.email)
            stored_hash = current.hashed_password if current is not None else None
        new_hash = await password.replacement_for(stored_hash)  # None: keep `stored_hash`

    async with uow:
        user = await uow.users.get_user_by_email(command.email, for_update=True)
        if user is None:
            created = await uow.users.create_user_if_absent(
                email=command.email, role=command.role_enum, hashed_password=new_hash or stored_hash
            )
            if created is not None:
                await uow.commit()
                return UserOutcome.of("created", created)
            # Another transaction inserted this email first: fall through and converge on its row.
            user = await uow.users.get_user_by_email(command.email, for_update=True)
            if user is None:
                raise ConcurrentChange(f"user {command.email} was deleted while being provisioned")

        changes: UserChanges = {}
        if user.role != command.role_enum:
            changes["role"] = command.role_enum
        if password is not None:
            if new_hash is None and user.hashed_password != stored_hash:
                # We decided to keep a hash that another job has replaced since: decide again.
                raise ConcurrentChange(f"the password of {command.email} changed while being provisioned")
            if new_hash is not None and user.hashed_password != new_hash:
                changes["hashed_password"] = new_hash
        if not user.is_active:
            changes["is_active"] = True
        return await _apply(uow, user, changes)


async def provision_users(
    uow: UnitOfWork, entries: Sequence[tuple[int, BulkUser]], rejected: list[dict[str, object]]
) -> BatchOutcome:
    """Ensure every valid entry of a batch holds, in one transaction; `rejected` entries are reported."""
    specs: list[UserSpec] = [
        {"email": user["email"], "role": ROLES[user["role"]], "hashed_password": user.get("password_hash")}
        for _, user in entries
    ]
    async with uow:
        created, updated = await uow.users.upsert_users(specs) if specs else (0, 0)
        await uow.commit()
    return BatchOutcome(
        created=created, updated=updated, unchanged=len(specs) - created - updated, rejected=rejected
    )


async def set_user_role(uow: UnitOfWork, command: SetUserRole) -> UserOutcome:
    """Ensure the existing user with this email has this role."""
    async with uow:
        user = await uow.users.get_user_by_email(command.email, for_update=True)
        if user is None:
            raise UserNotFound(f"set_user_role: no user with email {command.email}: provision it first")
        changes: UserChanges = {"role": command.role_enum} if user.role != command.role_enum else {}
        return await _apply(uow, user, changes)


async def deactivate_user(uow: UnitOfWork, command: DeactivateUser) -> UserOutcome:
    """Ensure no active user has this email; an absent user already satisfies that."""
    async with uow:
        user = await uow.users.get_user_by_email(command.email, for_update=True)
        if user is None:
            return UserOutcome(status="absent", email=command.email)
        changes: UserChanges = {"is_active": False} if user.is_active else {}
        return await _apply(uow, user, changes)


async def delete_user(uow: UnitOfWork, command: DeleteUser) -> UserOutcome:
    """Ensure no user has this email; deleting an absent user succeeds and says `absent`."""
    async with uow:
        user = await uow.users.get_user_by_email(command.email, for_update=True)
        if user is None:
            return UserOutcome(status="absent", email=command.email)
        outcome = UserOutcome(status="deleted", email=user.email, user_id=user.id)
        await uow.users.delete_user(user)
        await uow.commit()
        return outcome


async def _apply(uow: UnitOfWork, user: User, changes: UserChanges) -> UserOutcome:
    """Write `changes` (if any) and commit; `unchanged` when there was nothing to write."""
    if not changes:
        await uow.commit()
        return UserOutcome.of("unchanged", user)
    await uow.users.update_user(user, **changes)
    await uow.commit()
    return UserOutcome.of("updated", user)
