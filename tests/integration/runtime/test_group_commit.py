"""Group commit: concurrent provision_user commands share a statement, each gets its own outcome."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.queries import provisioned_users
from worker.db.session import SessionFactory
from worker.jobs.identity import identity_key
from worker.jobs.stamps import CLOCK
from worker.passwords.policy import hash_password
from worker.repositories.user import UserCommand
from worker.runtime.group_commit import CommandGroups, RunAlone
from worker.runtime.metrics import REGISTRY
from worker.services.outcome import UserOutcome

RETENTION = 30 * 24 * 3600


def provision(email: str, role: str, password_hash: str | None = None) -> UserCommand:
    """A provision_user command stamped now, as a job would carry it."""
    as_of = CLOCK.now()
    return {
        "key": identity_key(email),
        "email": email,
        "function": "provision_user",
        "role": role,
        "hashed_password": password_hash,
        "as_of": as_of,
        "job_id": f"job-{as_of}",
        "digest": None,
        "old_digest": None,
        "active": None,
        "external_id": None,
    }


async def test_concurrent_commands_each_get_their_own_outcome(
    committing_sessions: SessionFactory, engine: AsyncEngine
) -> None:
    groups = CommandGroups(committing_sessions, retention=RETENTION)
    password_hash = hash_password("grouped")
    await groups.apply(provision("old@example.com", "viewer"))
    await groups.apply(provision("same@example.com", "member"))
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE users SET is_active = false WHERE email = 'old@example.com'"))

    outcomes = await asyncio.gather(
        groups.apply(provision("new@example.com", "admin", password_hash)),
        groups.apply(provision("OLD@example.com", "viewer")),
        groups.apply(provision("same@example.com", "member")),
        *(groups.apply(provision(f"n{i}@example.com", "member")) for i in range(20)),
    )

    assert [o.status for o in outcomes[:3]] == ["created", "updated", "unchanged"]
    assert outcomes[1].as_result() == {
        "status": "updated",
        "email": "OLD@example.com",  # the newest command's spelling
        "user_id": outcomes[1].user_id,
        "role": "viewer",
        "is_active": True,
    }
    assert {o.status for o in outcomes[3:]} == {"created"}
    assert len({o.user_id for o in outcomes}) == len(outcomes)
    rows = await provisioned_users(engine)
    assert rows["new@example.com"] == ("admin", True, password_hash)
    assert rows["OLD@example.com"] == ("viewer", True, None)
    assert len(rows) == 23


def command(function: str, email: str, role: str | None = None) -> UserCommand:
    """Any single-user command, stamped now."""
    return {**provision(email, role or ""), "function": function, "role": role}


async def test_every_function_joins_groups(committing_sessions: SessionFactory, engine: AsyncEngine) -> None:
    groups = CommandGroups(committing_sessions, retention=RETENTION)
    await asyncio.gather(*(groups.apply(provision(f"{name}@example.com", "viewer")) for name in "abc"))

    outcomes = await asyncio.gather(
        groups.apply(command("set_user_role", "a@example.com", "admin")),
        groups.apply(command("deactivate_user", "b@example.com")),
        groups.apply(command("delete_user", "c@example.com")),
        groups.apply(command("set_user_role", "early@example.com", "member")),
    )

    assert [o.status for o in outcomes] == ["updated", "updated", "deleted", "pending"]
    assert await provisioned_users(engine) == {
        "a@example.com": ("admin", True, None),
        "b@example.com": ("viewer", False, None),
    }


async def test_the_same_email_twice_at_once_goes_into_two_groups(
    committing_sessions: SessionFactory, engine: AsyncEngine
) -> None:
    groups = CommandGroups(committing_sessions, retention=RETENTION)
    outcomes = await asyncio.gather(
        groups.apply(provision("twin@example.com", "member")),
        groups.apply(provision("TWIN@example.com", "admin")),
    )
    assert [o.status for o in outcomes] == ["created", "updated"]
    assert await provisioned_users(engine) == {"TWIN@example.com": ("admin", True, None)}


async def test_a_group_that_fails_for_a_non_transient_reason_sends_its_jobs_to_run_alone(
    committing_sessions: SessionFactory, engine: AsyncEngine
) -> None:
    groups = CommandGroups(committing_sessions, retention=RETENTION)
    async with engine.begin() as conn:  # a constraint the group will trip over, for real
        await conn.execute(text("ALTER TABLE users ADD CONSTRAINT no_bad CHECK (email NOT LIKE 'bad%')"))
    try:
        results = await asyncio.gather(
            groups.apply(provision("bad@example.com", "member")),
            groups.apply(provision("good@example.com", "member")),
            return_exceptions=True,
        )
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE users DROP CONSTRAINT no_bad"))
    assert all(isinstance(r, RunAlone) for r in results)
    assert await provisioned_users(engine) == {}


def _recording_writes(
    groups: CommandGroups, first_write_started: asyncio.Event, first_write_may_finish: asyncio.Event
) -> list[int]:
    """Record each group's size; hold the first group's write until `first_write_may_finish`."""
    sizes: list[int] = []
    write = groups._write

    async def recorded(group: list[Any]) -> None:
        sizes.append(len(group))
        if len(sizes) == 1:
            first_write_started.set()
            await first_write_may_finish.wait()
        await write(group)

    groups._write = recorded  # type: ignore[method-assign]
    return sizes


def _provision(groups: CommandGroups, *names: str) -> list[asyncio.Task[UserOutcome]]:
    return [asyncio.create_task(groups.apply(provision(f"{name}@example.com", "member"))) for name in names]


@pytest.mark.parametrize(("window", "expected_sizes"), [(0.5, [2, 5]), (0.0, [2, 3, 2])])
async def test_under_load_a_group_collects_for_the_window(
    committing_sessions: SessionFactory, window: float, expected_sizes: list[int]
) -> None:
    groups = CommandGroups(committing_sessions, retention=RETENTION, window=window)
    observed_before = REGISTRY.get_sample_value("provisioning_group_size_count") or 0
    writing, release = asyncio.Event(), asyncio.Event()
    sizes = _recording_writes(groups, writing, release)
    jobs = _provision(groups, "a", "b")
    await writing.wait()  # the first group (a, b) is being written
    jobs += _provision(groups, "c", "d", "e")  # arrive during that write: the worker is under load
    await asyncio.sleep(0)
    release.set()
    await asyncio.sleep(0.05)  # inside the window, if there is one
    jobs += _provision(groups, "f", "g")

    outcomes = await asyncio.gather(*jobs)

    assert sizes == expected_sizes
    observed = REGISTRY.get_sample_value("provisioning_group_size_count") or 0
    assert observed - observed_before == len(expected_sizes)  # the group-size metric saw each group
    assert [o.status for o in outcomes] == ["created"] * 7


async def test_a_lone_job_is_written_at_once_whatever_the_window(committing_sessions: SessionFactory) -> None:
    groups = CommandGroups(committing_sessions, retention=RETENTION, window=30.0)
    for name in ("first", "second"):
        outcome = await asyncio.wait_for(groups.apply(provision(f"{name}@example.com", "member")), timeout=10)
        assert outcome.status == "created"
