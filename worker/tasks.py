"""ARQ task functions: validate the payload, open one session, call one service, return small JSON."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from arq.worker import Retry
from pydantic import SecretStr

from worker.db.session import db_session
from worker.jobs.errors import (
    GaveUp,
    InvalidPayload,
    SealedPasswordRefused,
    StampRefused,
    UserNotFound,
    first_line,
)
from worker.jobs.payloads import (
    BulkUser,
    DeactivateUser,
    DeleteUser,
    PayloadT,
    ProvisionUser,
    ProvisionUsers,
    SetUserRole,
    UserRef,
    parse_bulk_entries,
    parse_payload,
)
from worker.jobs.stamps import MICROS, Stamp, check_stamp, now_micros
from worker.passwords.hashing import UnsealedPassword
from worker.repositories.user import ExpiredIntent
from worker.runtime import metrics
from worker.runtime.context import JobContext, WorkerContext
from worker.runtime.failures import record_failure
from worker.runtime.group_commit import RunAlone
from worker.runtime.logs import log_job_event
from worker.runtime.retries import backoff_delay, is_transient
from worker.services import maintenance, users
from worker.services.outcome import BatchOutcome, UserOutcome
from worker.services.unit_of_work import UnitOfWork

logger = logging.getLogger(__name__)

JobResult = dict[str, object]
# Our own deadline, inside ARQ's job_timeout: ARQ fails a timed-out job for good, we retry it.
DEADLINE_SHARE = 0.8
Outcome = UserOutcome | BatchOutcome
Runner = Callable[[JobContext, str, PayloadT], Awaitable[Outcome]]
# Failing to deactivate or delete leaves a person with access they should not have.
SECURITY_FUNCTIONS = frozenset({"deactivate_user", "delete_user"})


async def _run(
    ctx: JobContext,
    function: str,
    model: type[PayloadT],
    runner: Runner[PayloadT],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
) -> JobResult:
    ctx["job_started"] = started = time.perf_counter()
    metrics.JOBS_STARTED.labels(function).inc()
    metrics.JOBS_IN_PROGRESS.inc()
    try:
        result = await _attempt(ctx, function, model, runner, args, kwargs)
    except Retry as retry:
        ctx["job_outcome"], ctx["job_error_type"] = "retried", type(retry.__cause__).__name__
        raise
    except asyncio.CancelledError:
        ctx["job_outcome"] = "cancelled"
        raise
    except Exception as error:
        ctx["job_outcome"], ctx["job_error_type"] = "failed", type(error).__name__
        security = function in SECURITY_FUNCTIONS
        if security:
            _report_security_event(ctx, function, error)
        await _keep_failure(ctx, function, error, kwargs, security=security)
        raise
    else:
        ctx["job_outcome"] = "succeeded"
        return result
    finally:
        metrics.JOBS_IN_PROGRESS.dec()
        metrics.record_job(ctx, function, time.perf_counter() - started)
        log_job_event(ctx, function)


def _report_security_event(ctx: JobContext, function: str, error: Exception) -> None:
    """A deactivation or deletion failed for good: someone may keep access they should have lost."""
    metrics.SECURITY_FAILURES.labels(function).inc()
    logger.error(
        "SECURITY: %s failed for good (%s): the user may still have access; see `python -m worker failed`",
        function,
        type(error).__name__,
        extra={
            "event": {
                "event": "security",
                "security": True,
                "job_id": ctx.get("job_id"),
                "function": function,
                "try": ctx.get("job_try"),
                "error_type": type(error).__name__,
            }
        },
    )


async def _keep_failure(
    ctx: JobContext, function: str, error: Exception, kwargs: Mapping[str, Any], *, security: bool
) -> None:
    """Record a failed job for `python -m worker failed` / `retry`; never fails the job twice.

    The record keeps the job's stamp (its `as_of`, or its enqueue time), so that `retry` sends the
    command at its original position among the user's commands.
    """
    redis, settings = ctx.get("redis"), ctx.get("settings")
    if redis is None or settings is None:
        return
    arguments = dict(kwargs)
    if "as_of" not in arguments and "enqueue_time" in ctx:
        arguments["as_of"] = enqueue_micros(ctx)
    try:
        await record_failure(
            redis,
            settings.queue_name,
            job_id=str(ctx.get("job_id")),
            function=function,
            job_try=int(ctx.get("job_try", 1)),
            error_type=type(error).__name__,
            message=str(error),
            arguments=arguments,
            retention=settings.failed_job_retention,
            security=security,
        )
    except Exception:
        logger.exception("could not record the failure of job %s", ctx.get("job_id"))


async def _attempt(
    ctx: JobContext,
    function: str,
    model: type[PayloadT],
    runner: Runner[PayloadT],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
) -> JobResult:
    command = parse_payload(model, function, args, kwargs)
    settings = ctx["settings"]
    try:
        async with asyncio.timeout(settings.job_timeout * DEADLINE_SHARE):
            outcome = await runner(ctx, function, command)
    except Exception as error:
        if not is_transient(error):
            raise
        job_try = ctx.get("job_try", 1)
        reason = f"{type(error).__name__}: {first_line(error)}"
        if job_try >= settings.max_tries:
            raise GaveUp(function=function, tries=job_try, last_error=reason) from None
        delay = backoff_delay(job_try, base=settings.retry_base_delay, cap=settings.retry_max_delay)
        logger.warning(
            "job %s %s try %d hit a transient error (%s); retrying in %.2fs",
            ctx.get("job_id"),
            function,
            job_try,
            reason,
            delay,
        )
        raise Retry(defer=delay) from error
    return outcome.as_result()


async def provision_user(ctx: JobContext, *args: Any, **kwargs: Any) -> JobResult:
    """Ensure an active user with this email and role (and password, when given) exists."""
    return await _run(ctx, "provision_user", ProvisionUser, _single_user, args, kwargs)


async def set_user_role(ctx: JobContext, *args: Any, **kwargs: Any) -> JobResult:
    """Ensure the user with this email has this role (once provisioned, if it is not yet)."""
    return await _run(ctx, "set_user_role", SetUserRole, _single_user, args, kwargs)


async def deactivate_user(ctx: JobContext, *args: Any, **kwargs: Any) -> JobResult:
    """Ensure no active user has this email."""
    return await _run(ctx, "deactivate_user", DeactivateUser, _single_user, args, kwargs)


async def delete_user(ctx: JobContext, *args: Any, **kwargs: Any) -> JobResult:
    """Ensure no user has this email."""
    return await _run(ctx, "delete_user", DeleteUser, _single_user, args, kwargs)


async def provision_users(ctx: JobContext, *args: Any, **kwargs: Any) -> JobResult:
    """Apply a batch of users in one transaction; invalid entries are reported by index."""
    return await _run(ctx, "provision_users", ProvisionUsers, _provision_users, args, kwargs)


def job_stamp(ctx: JobContext, function: str, as_of: int | None) -> Stamp:
    """The job's stamp: its `as_of`, else its enqueue time; refused outside the accepted window."""
    if as_of is None:
        as_of = enqueue_micros(ctx)
    _check_window(ctx, as_of, function, now=now_micros())
    return Stamp(as_of, str(ctx["job_id"]))


def _check_window(ctx: JobContext, as_of: int, function: str, *, now: int) -> None:
    """`StampRefused` unless `as_of` lies within MAX_CLOCK_SKEW ahead and TOMBSTONE_RETENTION back."""
    settings = ctx["settings"]
    check_stamp(
        as_of,
        now=now,
        max_skew=settings.max_clock_skew,
        retention=settings.tombstone_retention,
        function=function,
    )


def enqueue_micros(ctx: JobContext) -> int:
    """The job's ARQ enqueue time (`et`, milliseconds) in microseconds."""
    return round(ctx["enqueue_time"].timestamp() * 1000) * 1000


async def _single_user(ctx: JobContext, function: str, command: UserRef) -> UserOutcome:
    stamp = job_stamp(ctx, function, command.as_of)
    password_hash: str | None = None
    if isinstance(command, ProvisionUser) and command.password_sealed is not None:
        async with _unit_of_work(ctx) as uow:
            password_hash = await users.password_to_store(
                uow, command.email, _unsealed_password(ctx, command.password_sealed)
            )
    user_command = users.user_command(function, command, stamp, hashed_password=password_hash)
    groups = ctx.get("command_groups")
    if groups is not None:
        try:
            return await groups.apply(user_command)  # the group's session, not one of our own
        except RunAlone:
            pass
    async with _unit_of_work(ctx) as uow:
        return await users.apply_command(uow, user_command)


def _unsealed_password(ctx: JobContext, sealed: str) -> UnsealedPassword:
    key_ring = ctx.get("key_ring")
    if key_ring is None:
        raise SealedPasswordRefused(
            "provision_user: this worker holds no SEAL_KEYS, so it cannot open password_sealed: "
            "configure the same SEAL_KEYS as the enqueuer"
        )
    return UnsealedPassword(SecretStr(key_ring.unseal(sealed)), ctx["hashing"])


async def _provision_users(ctx: JobContext, function: str, command: ProvisionUsers) -> BatchOutcome:
    limit = ctx["settings"].bulk_max_batch
    if len(command.users) > limit:
        raise InvalidPayload(
            f"provision_users: {len(command.users)} users in one batch, more than BULK_MAX_BATCH "
            f"({limit}): split it",
            function=function,
        )
    stamp = job_stamp(ctx, function, command.as_of)
    valid, rejected = await parse_bulk_entries(command.users)  # before taking a connection
    valid = _entries_in_window(ctx, valid, rejected)
    # A few batches at a time: more would only contend in PostgreSQL and hold more connections.
    async with ctx["bulk_slots"], _unit_of_work(ctx) as uow:
        return await users.provision_users(uow, users.bulk_commands(valid, stamp), rejected)


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
                _check_window(ctx, as_of, "provision_users", now=now)
        except StampRefused as error:
            rejected.append({"index": index, "error": str(error).removeprefix("provision_users: ")})
        else:
            kept.append((index, user))
    rejected.sort(key=lambda rejection: int(str(rejection["index"])))
    return kept


@asynccontextmanager
async def _unit_of_work(ctx: WorkerContext) -> AsyncIterator[UnitOfWork]:
    """A unit of work over a session of its own from the worker's factory, closed afterwards."""
    async with db_session(ctx["session_factory"]) as session:
        yield UnitOfWork(session)


# Housekeeping, run by ARQ's cron (one worker per scheduled run): each stays well inside JOB_TIMEOUT.
HOUSEKEEPING_SHARE = 0.5


async def expire_intents(ctx: WorkerContext) -> JobResult:
    """Report set_user_role intents no provision claimed within INTENT_WINDOW as failed (UserNotFound)."""
    settings = ctx["settings"]

    async def report(expired: list[ExpiredIntent]) -> None:
        for intent in expired:
            error = UserNotFound(email=intent.email, role=intent.role, window=settings.intent_window)
            await record_failure(
                ctx["redis"],
                settings.queue_name,
                job_id=intent.job_id,
                function=error.function,
                job_try=1,
                error_type=type(error).__name__,
                message=str(error),
                arguments={"email": intent.email, "role": intent.role, "as_of": intent.as_of},
                retention=settings.failed_job_retention,
            )

    async with _unit_of_work(ctx) as uow:
        expired = await maintenance.expire_intents(uow, report, window=settings.intent_window)
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
    tombstones = await maintenance.purge_tombstones(
        lambda: _unit_of_work(ctx),
        older_than=now_micros() - settings.tombstone_retention * MICROS,
        deadline=loop.time() + budget,
        clock=loop.time,
    )
    audit = await maintenance.purge_audit(
        lambda: _unit_of_work(ctx),
        retention=settings.audit_retention,
        deadline=loop.time() + budget,
        clock=loop.time,
    )
    return {"tombstones": tombstones, "audit_rows": audit}


TASKS = (provision_user, set_user_role, deactivate_user, delete_user, provision_users)
"""Every task the worker runs; their names are the job contract's function names."""
