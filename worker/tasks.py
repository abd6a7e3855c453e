"""ARQ task functions: validate the payload, open one session, call one service, return small JSON."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from worker.context import JobContext
from worker.db.session import db_session
from worker.payloads import DeactivateUser, DeleteUser, PayloadT, ProvisionUser, SetUserRole, parse_payload
from worker.services import users
from worker.services.outcome import UserOutcome
from worker.services.unit_of_work import UnitOfWork

JobResult = dict[str, object]
Service = Callable[[UnitOfWork, PayloadT], Awaitable[UserOutcome]]


async def _run(
    ctx: JobContext,
    function: str,
    model: type[PayloadT],
    service: Service[PayloadT],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
) -> JobResult:
    command = parse_payload(model, function, args, kwargs)
    async with db_session(ctx["session_factory"]) as session:
        outcome = await service(UnitOfWork(session), command)
    return outcome.as_result()


async def provision_user(ctx: JobContext, *args: Any, **kwargs: Any) -> JobResult:
    """Ensure an active user with this email and role (and password hash) exists."""
    return await _run(ctx, "provision_user", ProvisionUser, users.provision_user, args, kwargs)


async def set_user_role(ctx: JobContext, *args: Any, **kwargs: Any) -> JobResult:
    """Ensure the existing user with this email has this role."""
    return await _run(ctx, "set_user_role", SetUserRole, users.set_user_role, args, kwargs)


async def deactivate_user(ctx: JobContext, *args: Any, **kwargs: Any) -> JobResult:
    """Ensure no active user has this email."""
    return await _run(ctx, "deactivate_user", DeactivateUser, users.deactivate_user, args, kwargs)


async def delete_user(ctx: JobContext, *args: Any, **kwargs: Any) -> JobResult:
    """Ensure no user has this email."""
    return await _run(ctx, "delete_user", DeleteUser, users.delete_user, args, kwargs)


TASKS = (provision_user, set_user_role, deactivate_user, delete_user)
"""Every task the worker runs; their names are the job contract's function names."""
