"""The per-person lock on two real connections: purge, erase and groups against concurrent commands.

Each test holds a transaction open on one connection and runs the other one's statement in a task,
then waits until PostgreSQL reports that task's backend blocked by the first (`pg_blocking_pids`),
so what is asserted is the order the lock imposes, never how long anything took.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.support.settings import TEST_ERASURE_KEY
from worker.db.session import SessionFactory
from worker.jobs.identity import identity_key
from worker.jobs.payloads import DeleteUser, ProvisionUser, RoleName, SetUserRole, UserRef
from worker.jobs.stamps import MICROS, Stamp, now_micros
from worker.repositories.audit import AuditRepository
from worker.repositories.user import UserCommand, UserRepository
from worker.services import users
from worker.services.erasure import ErasureKeys
from worker.services.outcome import UserOutcome
from worker.services.unit_of_work import SqlAlchemyUnitOfWork

KEYS = ErasureKeys([TEST_ERASURE_KEY])
RETENTION = 60.0
WAIT = 30.0
"""How long a step may take before the test gives up on it (a failure, never a measurement)."""

T = TypeVar("T")


def command(
    function: str, email: str, as_of: int, *, role: RoleName | None = None, job_id: str | None = None
) -> UserCommand:
    user: UserRef
    if function == "provision_user":
        assert role is not None
        user = ProvisionUser(email=email, role=role)
    elif function == "set_user_role":
        assert role is not None
        user = SetUserRole(email=email, role=role)
    else:
        user = DeleteUser(email=email)
    return users.user_command(function, user, Stamp(as_of, job_id or f"job-{function}-{as_of}"), KEYS)


async def apply(
    sessions: SessionFactory, *commands: UserCommand, retention: float = 3600
) -> list[UserOutcome]:
    uow = SqlAlchemyUnitOfWork(sessions)
    return await users.apply_commands(uow, list(commands), retention=retention)


async def backend(session: AsyncSession) -> int:
    """The session's connection's backend pid (this begins its transaction)."""
    return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())


@asynccontextmanager
async def connection(sessions: SessionFactory) -> AsyncIterator[tuple[AsyncSession, int]]:
    """A session on a connection of its own, and that connection's backend pid; rolled back at the end."""
    async with sessions() as session:
        yield session, await backend(session)


async def blocked(engine: AsyncEngine, task: asyncio.Task[Any], pid: int, by: int) -> None:
    """Return once backend `pid` (running `task`) waits for a lock `by` holds; fail if it never does."""
    give_up = time.monotonic() + WAIT
    async with engine.connect() as conn:
        while time.monotonic() < give_up:
            if task.done():
                raise AssertionError(f"the task finished without waiting for backend {by}: {task.result()!r}")
            waiting = await conn.scalar(
                text("SELECT CAST(:by AS int) = ANY(pg_blocking_pids(:pid))"), {"pid": pid, "by": by}
            )
            if waiting:
                return
            await conn.rollback()  # a fresh snapshot of the lock table for the next look
            await asyncio.sleep(0.01)
    raise AssertionError(f"backend {pid} never waited for backend {by}")


async def finish(step: Awaitable[T]) -> T:
    return await asyncio.wait_for(step, WAIT)


async def settle(*tasks: asyncio.Task[Any]) -> None:
    """Stop tasks a failed test left running, and wait for them, so no session is left mid-statement."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def both(first: Awaitable[T], second: Awaitable[T]) -> tuple[T, T]:
    """Run two steps at once; wait for both even if one fails (then raise its error)."""
    one, other = await finish(asyncio.gather(first, second, return_exceptions=True))
    if isinstance(one, BaseException):
        raise one
    if isinstance(other, BaseException):
        raise other
    return one, other


@pytest.fixture
async def sessions(committing_sessions: SessionFactory, engine: AsyncEngine) -> SessionFactory:
    async with engine.begin() as conn:  # a clean slate, whatever ran before
        await conn.execute(text("TRUNCATE users, user_states, erased_stamps, user_changes RESTART IDENTITY"))
    return committing_sessions


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(text(sql), params)]


# a. purge against an apply


async def test_purge_skips_a_tombstone_a_command_holds_and_then_finds_it_fresh(
    sessions: SessionFactory, engine: AsyncEngine
) -> None:
    now = now_micros()
    await apply(sessions, command("delete_user", "ada@x.example", now - 120 * MICROS))
    provision = command("provision_user", "ada@x.example", now, role="admin")

    async with connection(sessions) as (a, _), connection(sessions) as (b, _):
        held = UserRepository(a)
        await held.lock([provision["key"]])
        (applied,) = await held.apply([provision], retention=RETENTION)
        assert applied.status == "created"

        assert await finish(UserRepository(b).purge_states(retention=RETENTION, batch=10)) == 0
        await b.commit()
        await a.commit()

    async with connection(sessions) as (b, _):
        assert await UserRepository(b).purge_states(retention=RETENTION, batch=10) == 0
        await b.commit()
    assert await rows(engine, "SELECT email, role FROM users") == [("ada@x.example", "admin")]
    assert await rows(engine, "SELECT key, provisioned_as_of FROM user_states") == [("ada@x.example", now)]


async def test_a_command_waits_for_a_purge_in_progress_and_then_meets_no_tombstone(
    sessions: SessionFactory, engine: AsyncEngine
) -> None:
    now = now_micros()
    await apply(sessions, command("delete_user", "ada@x.example", now - 120 * MICROS, role=None))
    provision = command("provision_user", "ada@x.example", now - 30 * MICROS, role="member")

    async def provision_in(session: AsyncSession) -> UserOutcome:
        return await users.apply_command(
            SqlAlchemyUnitOfWork(lambda: session), provision, retention=RETENTION
        )

    async with connection(sessions) as (b, b_pid), connection(sessions) as (a, a_pid):
        assert await UserRepository(b).purge_states(retention=RETENTION, batch=10) == 1
        task = asyncio.create_task(provision_in(a))
        try:
            await blocked(engine, task, a_pid, by=b_pid)
            await b.commit()
            outcome = await finish(task)
        finally:
            await settle(task)

    assert (outcome.status, outcome.role, outcome.is_active) == ("created", "member", True)
    assert await rows(engine, "SELECT email, role FROM users") == [("ada@x.example", "member")]
    assert await rows(
        engine, "SELECT provisioned_as_of, role_as_of, active_as_of, password_as_of FROM user_states"
    ) == [(now - 30 * MICROS, now - 30 * MICROS, now - 30 * MICROS, 0)]


# b. erase against a provision


@pytest.mark.parametrize(
    ("at", "status", "provisioned"),
    [(2, "superseded", []), (4, "created", [("Ada@x.example", "viewer")])],
    ids=["older-than-the-delete", "newer-than-the-delete"],
)
async def test_a_provision_waits_for_an_erase_in_progress_and_then_meets_its_stamp(
    sessions: SessionFactory, engine: AsyncEngine, at: int, status: str, provisioned: list[tuple[str, str]]
) -> None:
    base = now_micros() - 600 * MICROS
    await apply(sessions, command("provision_user", "ada@x.example", base + 1 * MICROS, role="member"))
    await apply(sessions, command("delete_user", "ada@x.example", base + 3 * MICROS, job_id="delete-job"))
    provision = command("provision_user", "Ada@x.example", base + at * MICROS, role="viewer")
    key = identity_key("ada@x.example")
    digest, old_digest = KEYS.digests(key)
    assert digest is not None

    async def provision_in(session: AsyncSession) -> UserOutcome:
        return await users.apply_command(SqlAlchemyUnitOfWork(lambda: session), provision, retention=3600)

    async with connection(sessions) as (a, a_pid), connection(sessions) as (b, b_pid):
        erasing = UserRepository(a)
        await erasing.lock([key])
        assert await erasing.get_user_by_key(key) is None
        assert await erasing.erase_state(key, digest, old_digest) == 1
        assert await AuditRepository(a).erase(key) == 2
        task = asyncio.create_task(provision_in(b))
        try:
            await blocked(engine, task, b_pid, by=a_pid)
            await a.commit()
            outcome = await finish(task)
        finally:
            await settle(task)

    assert outcome.status == status
    assert await rows(engine, "SELECT email, role FROM users") == provisioned
    assert await rows(engine, "SELECT as_of, job_id FROM erased_stamps") == [
        (base + 3 * MICROS, "delete-job")
    ]


# c. no deadlock


async def test_the_lock_takes_people_in_key_order_whatever_order_the_commands_come_in(
    sessions: SessionFactory, engine: AsyncEngine
) -> None:
    emails = ["a@x.example", "b@x.example", "c@x.example"]
    base = now_micros()
    await apply(sessions, *(command("provision_user", e, base, role="member") for e in emails))

    def group(order: list[str], at: int, role: RoleName) -> list[UserCommand]:
        return [command("set_user_role", e, base + at, role=role, job_id=f"job-{at}") for e in order]

    async def run(session: AsyncSession, commands: list[UserCommand]) -> list[UserOutcome]:
        return await users.apply_commands(SqlAlchemyUnitOfWork(lambda: session), commands, retention=3600)

    async with (
        connection(sessions) as (holder, holder_pid),
        connection(sessions) as (first, first_pid),
        connection(sessions) as (second, second_pid),
    ):
        await UserRepository(holder).lock(["b@x.example"])
        backwards = asyncio.create_task(run(first, group(emails[::-1], 1, "admin")))
        forwards: asyncio.Task[list[UserOutcome]] | None = None
        try:
            await blocked(engine, backwards, first_pid, by=holder_pid)
            forwards = asyncio.create_task(run(second, group(emails, 2, "viewer")))
            await blocked(engine, forwards, second_pid, by=first_pid)
            async with engine.connect() as observer:
                free = await observer.scalars(
                    text("SELECT key FROM user_states ORDER BY key FOR UPDATE SKIP LOCKED")
                )
                # a is held by the backwards group (taken before b), b by the holder; c is not taken yet.
                assert list(free) == ["c@x.example"]
                await observer.rollback()
            await holder.commit()
            done_backwards = await finish(backwards)
            done_forwards = await finish(forwards)
        finally:
            await settle(backwards, *([forwards] if forwards is not None else []))

    assert [o.status for o in done_backwards] == ["updated"] * 3
    assert [o.status for o in done_forwards] == ["updated"] * 3
    assert await rows(engine, "SELECT email, role FROM users ORDER BY email") == [
        (e, "viewer") for e in emails
    ]


async def test_groups_with_overlapping_people_in_opposite_orders_never_deadlock(
    sessions: SessionFactory, engine: AsyncEngine
) -> None:
    emails = [f"p{n:03d}@x.example" for n in range(200)]
    base = now_micros()

    def group(function: str, order: list[str], at: int, role: RoleName) -> list[UserCommand]:
        return [command(function, e, base + at, role=role, job_id=f"job-{at}") for e in order]

    async with connection(sessions) as (a, _), connection(sessions) as (b, _):
        for round_ in range(30):
            function = "provision_user" if round_ % 3 == 0 else "set_user_role"
            await asyncio.gather(backend(a), backend(b))  # both on their connections before either locks
            forwards, backwards = await both(
                users.apply_commands(
                    SqlAlchemyUnitOfWork(lambda: a),
                    group(function, emails, 2 * round_, "admin"),
                    retention=3600,
                ),
                users.apply_commands(
                    SqlAlchemyUnitOfWork(lambda: b),
                    group(function, emails[::-1], 2 * round_ + 1, "viewer"),
                    retention=3600,
                ),
            )
            assert len(forwards) == len(backwards) == len(emails)

    assert await rows(engine, "SELECT count(*), min(role), max(role) FROM users") == [
        (len(emails), "viewer", "viewer")
    ]
