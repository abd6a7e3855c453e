"""ARQ task functions: each opens a unit of work, calls one service, and returns small JSON.

A job function is declared once, with `@task`: its name is the job's function name, and its `command`
annotation the payload model. `worker.runtime.job_run.run_job` wraps every such task: payload
validation, deadline, retries, failure records, metrics and the job's log line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, get_type_hints

from worker.jobs.errors import InvalidPayload, NotProvisionedYet, StampRefused, UserNotFound
from worker.jobs.payloads import (
    PAYLOADS,
    BulkUser,
    DeactivateUser,
    DeleteUser,
    PayloadT,
    ProvisionUser,
    ProvisionUsers,
    SetUserRole,
    UpdateUser,
    UserRef,
    WithPassword,
    parse_bulk_entries,
)
from worker.jobs.sealing import unseal_password
from worker.jobs.stamps import now_micros
from worker.repositories.user import ExpiredIntent, UserCommand
from worker.runtime.context import JobContext, WorkerContext
from worker.runtime.failures import record_failure
from worker.runtime.group_commit import RunAlone
from worker.runtime.job_run import JobResult, Runner, check_window, job_stamp, run_job
from worker.services import maintenance, users
from worker.services.outcome import BatchOutcome, UserOutcome
from worker.services.unit_of_work import SqlAlchemyUnitOfWork

logger = logging.getLogger(__name__)

Task = Callable[..., Awaitable[JobResult]]
"""What ARQ runs: `task(ctx, **payload)`, the job's small JSON result."""

TASKS: list[Task] = []
"""Every task the worker runs, in the order declared; their names are the job contract's function names."""


def task(body: Runner[PayloadT]) -> Task:
    """Declare a job function: the task is named after `body`, and its payload is the model that
    `body`'s `command` parameter is annotated with; `body` gets the function name and the valid payload.

    Name and model must be the job contract's (`worker.jobs.payloads.PAYLOADS`), which enqueuers check
    against: a task that does not match it fails at import, not on its first job.
    """
    function = body.__name__
    model: type[PayloadT] = get_type_hints(body)["command"]
    if PAYLOADS.get(function) is not model:
        raise TypeError(
            f"task {function}({model.__name__}) is not in the job contract: add it to "
            "worker.jobs.payloads.PAYLOADS (and docs/jobs.md), or name the function and payload as there"
        )

    async def run(ctx: JobContext, *args: Any, **kwargs: Any) -> JobResult:
        return await run_job(ctx, function, model, body, args, kwargs)

    run.__name__ = run.__qualname__ = function  # ARQ registers a task under its __qualname__
    run.__module__, run.__doc__ = body.__module__, body.__doc__
    TASKS.append(run)
    return run


@task
async def provision_user(ctx: JobContext, function: str, command: ProvisionUser) -> UserOutcome:
    """Ensure an active user with this email and role (and password, when given) exists."""
    return await _single_user(ctx, function, command)


@task
async def set_user_role(ctx: JobContext, function: str, command: SetUserRole) -> UserOutcome:
    """Ensure the user with this email has this role (once provisioned, if it is not yet)."""
    return await _single_user(ctx, function, command)


@task
async def update_user(ctx: JobContext, function: str, command: UpdateUser) -> UserOutcome:
    """Change only the named fields of a provisioned user; waits (retries) for a user not provisioned yet."""
    return await _single_user(ctx, function, command)


@task
async def deactivate_user(ctx: JobContext, function: str, command: DeactivateUser) -> UserOutcome:
    """Ensure no active user has this email."""
    return await _single_user(ctx, function, command)


@task
async def delete_user(ctx: JobContext, function: str, command: DeleteUser) -> UserOutcome:
    """Ensure no user has this email."""
    return await _single_user(ctx, function, command)


async def _single_user(ctx: JobContext, function: str, command: UserRef) -> UserOutcome:
    stamp = job_stamp(ctx, function, command.as_of, command.stamp_job_id)
    password_hash: str | None = None
    if isinstance(command, WithPassword) and command.password_sealed is not None:
        password = unseal_password(
            command.password_sealed, key_ring=ctx.get("key_ring"), hashing=ctx["hashing"]
        )
        password_hash = await users.password_to_store(
            SqlAlchemyUnitOfWork(ctx["session_factory"]), command.email, password
        )
    user_command = users.user_command(function, command, stamp, ctx["erasure"], hashed_password=password_hash)
    # A hashed password's write goes alone: those come at hashing's pace, and in the group commit
    # they would keep it under load, so that the cheap jobs beside them waited for its window.
    outcome = await _apply(ctx, user_command, grouped=password_hash is None)
    if outcome.status == "refused":
        raise StampRefused(
            f"{function}: as_of is older than TOMBSTONE_RETENTION ({ctx['settings'].tombstone_retention}s) "
            "by the database's clock, so it can no longer be ordered against deletes: send it again with a "
            "current as_of",
            function=function,
            as_of=stamp.as_of,
        )
    if outcome.status == "waiting":
        raise NotProvisionedYet(function=function)
    return outcome


async def _apply(ctx: JobContext, command: UserCommand, *, grouped: bool = True) -> UserOutcome:
    groups = ctx.get("command_groups") if grouped else None
    if groups is not None:
        try:
            return await groups.apply(command)  # the group's session, not one of our own
        except RunAlone:
            pass
    return await users.apply_command(
        SqlAlchemyUnitOfWork(ctx["session_factory"]), command, retention=ctx["settings"].tombstone_retention
    )


@task
async def provision_users(ctx: JobContext, function: str, command: ProvisionUsers) -> BatchOutcome:
    """Apply a batch of users in one transaction; invalid entries are reported by index."""
    limit = ctx["settings"].bulk_max_batch
    if len(command.users) > limit:
        raise InvalidPayload(
            f"provision_users: {len(command.users)} users in one batch, more than BULK_MAX_BATCH "
            f"({limit}): split it",
            function=function,
        )
    stamp = job_stamp(ctx, function, command.as_of, command.stamp_job_id)
    # A few batches at a time: more would only contend in PostgreSQL and hold more connections.
    # Batches waiting for a slot keep only their raw entries; each is parsed once it has a slot,
    # before it takes a connection.
    async with ctx["bulk_slots"]:
        valid, rejected = await parse_bulk_entries(command.users)
        valid = _entries_in_window(ctx, valid, rejected)
        return await users.provision_users(
            SqlAlchemyUnitOfWork(ctx["session_factory"]),
            users.bulk_commands(valid, stamp, ctx["erasure"]),
            rejected,
            retention=ctx["settings"].tombstone_retention,
        )


def _entries_in_window(
    ctx: JobContext, valid: list[tuple[int, BulkUser]], rejected: list[dict[str, object]]
) -> list[tuple[int, BulkUser]]:
    """Entries whose own as_of is acceptable; the others join `rejected` (kept in index order)."""
    if not any(user.get("as_of") is not None for _, user in valid):
        return valid
    now = now_micros()
    kept: list[tuple[int, BulkUser]] = []
    for index, user in valid:
        as_of = user.get("as_of")
        try:
            if as_of is not None:
                check_window(ctx, as_of, "provision_users", now=now)
        except StampRefused as error:
            rejected.append({"index": index, "error": str(error).removeprefix("provision_users: ")})
        else:
            kept.append((index, user))
    rejected.sort(key=lambda rejection: int(str(rejection["index"])))
    return kept


# Housekeeping, run by ARQ's cron (one worker per scheduled run): each stays well inside JOB_TIMEOUT.
HOUSEKEEPING_SHARE = 0.5


async def expire_intents(ctx: WorkerContext) -> JobResult:
    """Report set_user_role intents no provision claimed within INTENT_WINDOW as failed (UserNotFound), once.

    The intents are kept: a provision that arrives later still applies them."""
    settings = ctx["settings"]

    async def report(expired: list[ExpiredIntent]) -> None:
        for intent in expired:
            error = UserNotFound(email=intent.key, role=intent.role, window=settings.intent_window)
            await record_failure(
                ctx["redis"],
                settings.queue_name,
                job_id=intent.job_id,
                function=error.function,
                job_try=1,
                error_type=type(error).__name__,
                message=str(error),
                # The stamp whole, so that `retry` keeps the command's place among the person's commands.
                arguments={
                    "email": intent.key,
                    "role": intent.role,
                    "as_of": intent.as_of,
                    "stamp_job_id": intent.job_id,
                },
                retention=settings.failed_job_retention,
            )

    expired = await maintenance.expire_intents(
        SqlAlchemyUnitOfWork(ctx["session_factory"]), report, window=settings.intent_window
    )
    if expired:
        logger.warning(
            "%d set_user_role intent(s) expired unclaimed; see `python -m worker failed`", len(expired)
        )
    return {"expired": len(expired)}


async def purge_expired(ctx: WorkerContext) -> JobResult:
    """Delete tombstones older than TOMBSTONE_RETENTION and audit rows older than AUDIT_RETENTION."""
    settings = ctx["settings"]
    loop = asyncio.get_running_loop()
    budget = settings.job_timeout * HOUSEKEEPING_SHARE / 2
    uow = SqlAlchemyUnitOfWork(ctx["session_factory"])
    tombstones = await maintenance.purge_tombstones(
        uow,
        retention=settings.tombstone_retention,
        deadline=loop.time() + budget,
        clock=loop.time,
    )
    audit = await maintenance.purge_audit(
        uow,
        retention=settings.audit_retention,
        deadline=loop.time() + budget,
        clock=loop.time,
    )
    return {"tombstones": tombstones, "audit_rows": audit}
