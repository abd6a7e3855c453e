"""Stamped commands on real PostgreSQL: every user converges on its newest command, in any run order."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest
from pydantic_core import PydanticCustomError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.support.ordering_model import Command, Password, State, final_states
from tests.support.settings import TEST_ERASURE_KEY
from worker.db.session import SessionFactory
from worker.jobs.emails import normalize_email
from worker.jobs.identity import identity_key
from worker.jobs.stamps import MICROS, now_micros
from worker.passwords.policy import hash_password
from worker.repositories.audit import AuditRepository, change_record
from worker.repositories.user import UserCommand, UserRepository
from worker.services import users
from worker.services.erasure import ErasureKeys
from worker.services.outcome import UserOutcome
from worker.services.unit_of_work import SqlAlchemyUnitOfWork

HASH_A = hash_password("first passphrase")
HASH_B = hash_password("second passphrase")
DAY = 24 * 3600
RETENTION = 30 * DAY
T0 = now_micros()  # commands are stamped T0 + a few µs: well inside RETENTION
ERASURE = ErasureKeys([TEST_ERASURE_KEY])


def c(
    function: str, email: str, at: int, role: str | None = None, password_hash: str | None = None
) -> Command:
    """A command stamped `at` microseconds after T0, with a job id of its own."""
    password = Password(hash=password_hash) if password_hash is not None else None
    return Command(function, email, T0 + at, f"job-{function}-{at}", role, password)


def as_user_command(command: Command) -> UserCommand:
    """The command as the worker makes it, after payload validation normalized the email (an email
    validation refuses is passed on as it is, for tests of what the database refuses)."""
    try:
        email = normalize_email(command.email)
    except PydanticCustomError:
        email = command.email
    key = identity_key(email)
    digest, old_digest = ERASURE.digests(key)
    return {
        "key": key,
        "email": email,
        "function": command.function,
        "role": command.role,
        "hashed_password": command.password.hash if command.password is not None else None,
        "as_of": command.as_of,
        "job_id": command.job_id,
        "digest": digest,
        "old_digest": old_digest,
        "active": None,
        "external_id": None,
    }


async def run(session: AsyncSession, command: Command) -> UserOutcome:
    return await users.apply_command(
        SqlAlchemyUnitOfWork(lambda: session), as_user_command(command), retention=RETENTION
    )


async def states(session: AsyncSession) -> dict[str, State]:
    result = await session.execute(text("SELECT email, role, is_active, hashed_password FROM users"))
    return {
        identity_key(row.email): State(
            row.email,
            row.role,
            row.is_active,
            Password(hash=row.hashed_password) if row.hashed_password else None,
        )
        for row in result
    }


async def test_provision_creates_then_a_redelivery_is_unchanged(db_session: AsyncSession) -> None:
    provision = c("provision_user", "ada@example.com", 1, "admin")
    first = await run(db_session, provision)
    again = await run(db_session, provision)
    assert first.as_result() == {
        "status": "created",
        "email": "ada@example.com",
        "user_id": first.user_id,
        "role": "admin",
        "is_active": True,
    }
    assert again == UserOutcome("unchanged", "ada@example.com", first.user_id, "admin", True)


async def test_counterexample_provision_deactivate_provision_run_1_3_2_ends_active(
    db_session: AsyncSession,
) -> None:
    p1, d2, p3 = (
        c("provision_user", "hr@example.com", 1, "member"),
        c("deactivate_user", "hr@example.com", 2),
        c("provision_user", "hr@example.com", 3, "member"),
    )
    statuses = [(await run(db_session, command)).status for command in (p1, p3, d2)]
    # provision@3 changes no value, but takes the stamps, so the older deactivation loses.
    assert statuses == ["created", "unchanged", "superseded"]
    assert await states(db_session) == {"hr@example.com": State("hr@example.com", "member", True, None)}


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
async def test_counterexample_a_delete_resets_the_password_in_every_order(
    db_session: AsyncSession, order: tuple[int, ...]
) -> None:
    commands = [
        c("provision_user", "pw@example.com", 1, "admin", HASH_A),
        c("delete_user", "pw@example.com", 2),
        c("provision_user", "pw@example.com", 3, "viewer"),
    ]
    for index in order:
        await run(db_session, commands[index])
    assert await states(db_session) == {"pw@example.com": State("pw@example.com", "viewer", True, None)}


SCENARIOS = {
    "everything on one user": [
        c("provision_user", "s@example.com", 1, "viewer", HASH_A),
        c("set_user_role", "s@example.com", 2, "admin"),
        c("deactivate_user", "s@example.com", 3),
        c("delete_user", "s@example.com", 4),
        c("provision_users", "S@example.com", 5, "member"),
    ],
    "intents before their user": [
        c("delete_user", "s@example.com", 1),
        c("provision_user", "s@example.com", 2, "viewer"),
        c("set_user_role", "s@example.com", 3, "admin"),
        c("deactivate_user", "s@example.com", 4),
        c("provision_user", "S@example.com", 5, "member", HASH_B),
    ],
}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=list(SCENARIOS))
async def test_every_run_order_ends_in_the_sequential_state(db_session: AsyncSession, scenario: str) -> None:
    commands = SCENARIOS[scenario]
    expected = final_states(commands)
    for number, order in enumerate(itertools.permutations(commands)):
        email = f"p{number}@example.com"  # a fresh user for each order
        renamed = [
            Command(
                x.function,
                email if x.email.islower() else email.upper(),
                x.as_of,
                x.job_id + email,
                x.role,
                x.password,
            )
            for x in order
        ]
        for command in renamed:
            await run(db_session, command)
        assert (await states(db_session)).get(email) == final_states(renamed).get(email), [
            f"{x.function}@{x.as_of - T0}" for x in order
        ]
    assert expected  # both scenarios end with a user


async def test_set_user_role_before_its_user_is_pending_and_the_older_provision_applies_it(
    db_session: AsyncSession,
) -> None:
    early = await run(db_session, c("set_user_role", "later@example.com", 2, "admin"))
    assert early.as_result() == {"status": "pending", "email": "later@example.com"}
    created = await run(db_session, c("provision_user", "later@example.com", 1, "viewer"))
    assert (created.status, created.role, created.is_active) == ("created", "admin", True)
    pending = await db_session.scalar(
        text("SELECT count(*) FROM user_states WHERE pending_since IS NOT NULL")
    )
    assert pending == 0  # claimed: nothing left to expire


async def test_deactivate_before_its_user_is_absent_and_the_older_provision_creates_it_inactive(
    db_session: AsyncSession,
) -> None:
    early = await run(db_session, c("deactivate_user", "gone@example.com", 2))
    assert early.as_result() == {"status": "absent", "email": "gone@example.com"}
    created = await run(db_session, c("provision_user", "gone@example.com", 1, "member"))
    assert (created.status, created.is_active) == ("created", False)


async def test_a_tombstone_stops_an_older_provision_and_a_recreated_user_gets_a_new_id(
    db_session: AsyncSession,
) -> None:
    first = await run(db_session, c("provision_user", "t@example.com", 1, "member"))
    deleted = await run(db_session, c("delete_user", "t@example.com", 3))
    assert deleted.as_result() == {"status": "deleted", "email": "t@example.com", "user_id": first.user_id}
    late = await run(db_session, c("provision_user", "t@example.com", 2, "admin"))
    assert late.as_result() == {"status": "superseded", "email": "t@example.com"}
    assert await states(db_session) == {}
    assert (await run(db_session, c("set_user_role", "t@example.com", 2, "admin"))).status == "superseded"
    again = await run(db_session, c("provision_user", "t@example.com", 4, "viewer"))
    assert again.status == "created"
    assert again.user_id != first.user_id
    # A delete of no user still leaves its tombstone.
    assert (await run(db_session, c("delete_user", "never@example.com", 9))).status == "absent"
    assert (
        await run(db_session, c("provision_user", "never@example.com", 8, "admin"))
    ).status == "superseded"


async def test_every_outcome_is_audited_once_without_password_hashes(db_session: AsyncSession) -> None:
    commands = [
        c("provision_user", "au@example.com", 1, "viewer", HASH_A),
        c("set_user_role", "au@example.com", 3, "admin"),
        c("provision_user", "au@example.com", 2, "member", HASH_B),
        c("delete_user", "au@example.com", 4),
    ]
    for command in [*commands, commands[1]]:  # the second set_user_role is a re-delivery
        await run(db_session, command)

    history = [
        change_record(row)
        for row in await AuditRepository(db_session).history(identity_key("AU@example.com"))
    ]

    assert [(h["function"], h["status"], h["changes"]) for h in history] == [
        (
            "provision_user",
            "created",
            {
                "provisioned": [False, True],
                "role": [None, "viewer"],
                "is_active": [None, True],
                "password": "changed",
            },
        ),
        ("provision_user", "updated", {"password": "changed"}),  # its role was already newer
        ("set_user_role", "updated", {"role": ["viewer", "admin"]}),
        (
            "delete_user",
            "deleted",
            {
                "provisioned": [True, False],
                "role": ["admin", None],
                "is_active": [True, None],  # no user: no is_active, as before its creation
                "password": "changed",
            },
        ),
    ]
    assert [h["as_of"] for h in history] == [T0 + 1, T0 + 2, T0 + 3, T0 + 4]
    assert history[0]["user_id"] == history[3]["user_id"] is not None
    assert HASH_A not in str(history)
    assert HASH_B not in str(history)


async def test_a_batch_counts_superseded_entries(db_session: AsyncSession) -> None:
    await run(db_session, c("delete_user", "b1@example.com", 5))
    await run(db_session, c("provision_user", "b2@example.com", 5, "admin"))
    batch = [
        (i, as_user_command(c("provision_users", f"b{i}@example.com", 3, "member"))) for i in range(1, 5)
    ]
    outcome = await users.provision_users(
        SqlAlchemyUnitOfWork(lambda: db_session), batch, [], retention=RETENTION
    )
    assert (outcome.created, outcome.updated, outcome.unchanged, outcome.superseded) == (2, 0, 0, 2)


async def test_a_failing_unit_of_work_writes_nothing(db_session: AsyncSession) -> None:
    too_long = "x" * 400 + "@example.com"  # longer than the column: PostgreSQL refuses the insert
    with pytest.raises(Exception, match="value too long"):
        await users.apply_commands(
            SqlAlchemyUnitOfWork(lambda: db_session),
            [
                as_user_command(c("provision_user", "ok@example.com", 1, "admin")),
                as_user_command(c("provision_user", too_long, 1, "admin")),
            ],
            retention=RETENTION,
        )
    assert await states(db_session) == {}
    assert await db_session.scalar(text("SELECT count(*) FROM user_states")) == 0  # nor the locks' rows
    assert (
        await db_session.scalar(text("SELECT count(*) FROM user_changes WHERE email = 'ok@example.com'")) == 0
    )


async def test_concurrent_commands_for_one_email_converge_on_the_newest(
    committing_sessions: SessionFactory,
) -> None:
    rng = random.Random(7)
    functions = ["provision_user", "set_user_role", "deactivate_user", "delete_user", "provision_users"]
    commands = []
    for at in range(1, 61):
        function = rng.choice(functions)
        role = (
            rng.choice(["admin", "member", "viewer"])
            if function in {"provision_user", "set_user_role", "provision_users"}
            else None
        )
        commands.append(
            c(
                function,
                "race@example.com",
                at,
                role,
                rng.choice([None, HASH_A, HASH_B]) if "provision" in function else None,
            )
        )
    rng.shuffle(commands)

    async def one(command: Command) -> None:
        async with committing_sessions() as session:
            await run(session, command)

    await asyncio.gather(*(one(command) for command in commands))  # each in its own transaction, at once

    async with committing_sessions() as session:
        assert await states(session) == final_states(commands)
        assert await session.scalar(
            text("SELECT count(*) FROM user_changes WHERE email_key = 'race@example.com'")
        ) == len(commands)


async def test_a_command_waits_for_its_person_s_lock_and_applies_to_what_the_holder_committed(
    committing_sessions: SessionFactory,
) -> None:
    # Another transaction provisions the person and holds the lock, uncommitted: a set_user_role
    # that did not wait would find no user and store an intent ("pending").
    async with committing_sessions() as first, committing_sessions() as second:
        holder = UserRepository(first)
        held = as_user_command(c("provision_user", "new@example.com", 1, "viewer"))
        await holder.lock([held["key"]])
        await holder.apply([held], retention=RETENTION)
        racing = asyncio.create_task(run(second, c("set_user_role", "NEW@example.com", 2, "admin")))
        await asyncio.sleep(0.3)
        assert not racing.done()  # waiting on the held lock
        await first.commit()
        outcome = await racing
    assert (outcome.status, outcome.role) == ("updated", "admin")
    async with committing_sessions() as session:
        assert await states(session) == {"new@example.com": State("new@example.com", "admin", True, None)}


async def test_a_command_older_than_the_retention_is_refused_and_writes_nothing(
    db_session: AsyncSession,
) -> None:
    old = Command("provision_user", "late@example.com", now_micros() - 2 * DAY * MICROS, "job-late", "admin")
    outcome = await users.apply_command(
        SqlAlchemyUnitOfWork(lambda: db_session), as_user_command(old), retention=DAY
    )
    assert outcome.as_result() == {"status": "refused", "email": "late@example.com"}
    assert await states(db_session) == {}
    assert await db_session.scalar(text("SELECT count(*) FROM user_changes")) == 0
    recent = await users.apply_command(
        SqlAlchemyUnitOfWork(lambda: db_session),
        as_user_command(c("provision_user", "late@example.com", 1, "admin")),
        retention=DAY,
    )
    assert recent.status == "created"
