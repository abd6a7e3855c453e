"""ARQ task functions: validate the payload, open one session, call one service, return small JSON."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from arq.worker import Retry
from pydantic import SecretStr

from worker import metrics
from worker.context import JobContext
from worker.db.session import db_session
from worker.errors import GaveUp, InvalidPayload, first_line
from worker.failures import record_failure
from worker.logs import log_job_event
from worker.passwords import DesiredPassword, GivenHash, UnsealedPassword
from worker.payloads import (
    DeactivateUser,
    DeleteUser,
    PayloadT,
    ProvisionUser,
    ProvisionUsers,
    SetUserRole,
    parse_bulk_entries,
    parse_payload,
)
from worker.retries import backoff_delay, is_transient
from worker.sealing import SealedPasswordRefused
from worker.services import users
from worker.services.group_commit import RunAlone
from worker.services.outcome import BatchOutcome, UserOutcome
from worker.services.unit_of_work import UnitOfWork

logger = logging.getLogger(__name__)

JobResult = dict[str, object]
# Our own deadline, inside ARQ's job_timeout: ARQ fails a timed-out job for good, we retry it.
DEADLINE_SHARE = 0.8
Outcome = UserOutcome | BatchOutcome
Service = Callable[[UnitOfWork, PayloadT], Awaitable[Outcome]]
Runner = Callable[[JobContext, PayloadT], Awaitable[Outcome]]


def _in_session(service: Service[PayloadT]) -> Runner[PayloadT]:
    """Run `service` in a unit of work over the job's own session."""

    async def run(ctx: JobContext, command: PayloadT) -> Outcome:
        async with db_session(ctx["session_factory"]) as session:
            return await service(UnitOfWork(session), command)

    return run


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
        await _keep_failure(ctx, function, error, kwargs)
        raise
    else:
        ctx["job_outcome"] = "succeeded"
        return result
    finally:
        metrics.JOBS_IN_PROGRESS.dec()
        metrics.record_job(ctx, function, time.perf_counter() - started)
        log_job_event(ctx, function)


async def _keep_failure(ctx: JobContext, function: str, error: Exception, kwargs: Mapping[str, Any]) -> None:
    """Record a failed job for `python -m worker failed` / `retry`; never fails the job twice."""
    redis, settings = ctx.get("redis"), ctx.get("settings")
    if redis is None or settings is None:
        return
    try:
        await record_failure(
            redis,
            settings.queue_name,
            job_id=str(ctx.get("job_id")),
            function=function,
            job_try=int(ctx.get("job_try", 1)),
            error_type=type(error).__name__,
            message=str(error),
            arguments=kwargs,
            retention=settings.failed_job_retention,
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
            outcome = await runner(ctx, command)
    except Exception as error:
        if not is_transient(error):
            raise
        job_try = ctx.get("job_try", 1)
        reason = f"{type(error).__name__}: {first_line(error)}"
        if job_try >= settings.max_tries:
            raise GaveUp(f"{function}: gave up after {job_try} tries; last error {reason}") from None
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
    return await _run(ctx, "provision_user", ProvisionUser, _provision_user, args, kwargs)


async def _provision_user(ctx: JobContext, command: ProvisionUser) -> UserOutcome:
    groups = ctx.get("provision_groups")
    if groups is not None and command.password_sealed is None:
        try:
            return await groups.provision(command)  # the group's session, not one of our own
        except RunAlone:
            pass
    async with db_session(ctx["session_factory"]) as session:
        return await users.provision_user(UnitOfWork(session), command, _desired_password(ctx, command))


def _desired_password(ctx: JobContext, command: ProvisionUser) -> DesiredPassword | None:
    if command.password_sealed is None:
        return GivenHash(command.password_hash) if command.password_hash is not None else None
    key_ring = ctx.get("key_ring")
    if key_ring is None:
        raise SealedPasswordRefused(
            "provision_user: this worker holds no SEAL_KEYS, so it cannot open password_sealed: "
            "configure the same SEAL_KEYS as the enqueuer"
        )
    return UnsealedPassword(SecretStr(key_ring.unseal(command.password_sealed)), ctx["hashing"])


_SET_USER_ROLE = _in_session(users.set_user_role)
_DEACTIVATE_USER = _in_session(users.deactivate_user)
_DELETE_USER = _in_session(users.delete_user)


async def set_user_role(ctx: JobContext, *args: Any, **kwargs: Any) -> JobResult:
    """Ensure the existing user with this email has this role."""
    return await _run(ctx, "set_user_role", SetUserRole, _SET_USER_ROLE, args, kwargs)


async def deactivate_user(ctx: JobContext, *args: Any, **kwargs: Any) -> JobResult:
    """Ensure no active user has this email."""
    return await _run(ctx, "deactivate_user", DeactivateUser, _DEACTIVATE_USER, args, kwargs)


async def delete_user(ctx: JobContext, *args: Any, **kwargs: Any) -> JobResult:
    """Ensure no user has this email."""
    return await _run(ctx, "delete_user", DeleteUser, _DELETE_USER, args, kwargs)


async def provision_users(ctx: JobContext, *args: Any, **kwargs: Any) -> JobResult:
    """Apply a batch of users in one transaction; invalid entries are reported by index."""
    return await _run(ctx, "provision_users", ProvisionUsers, _provision_users, args, kwargs)


async def _provision_users(ctx: JobContext, command: ProvisionUsers) -> BatchOutcome:
    limit = ctx["settings"].bulk_max_batch
    if len(command.users) > limit:
        raise InvalidPayload(
            f"provision_users: {len(command.users)} users in one batch, more than BULK_MAX_BATCH "
            f"({limit}): split it"
        )
    valid, rejected = await parse_bulk_entries(command.users)  # before taking a connection
    # A few batches at a time: more would only contend in PostgreSQL and hold more connections.
    async with ctx["bulk_slots"], db_session(ctx["session_factory"]) as session:
        return await users.provision_users(UnitOfWork(session), valid, rejected)


TASKS = (provision_user, set_user_role, deactivate_user, delete_user, provision_users)
"""Every task the worker runs; their names are the job contract's function names."""
