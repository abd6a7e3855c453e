"""Group commit: concurrent provision_user commands share a statement, each gets its own outcome."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.db.session import SessionFactory
from worker.metrics import REGISTRY
from worker.payloads import ProvisionUser
from worker.security import hash_password
from worker.services.group_commit import ProvisionGroups, RunAlone
from worker.services.outcome import UserOutcome


async def _rows(engine: AsyncEngine) -> dict[str, tuple[str, bool, str | None]]:
    async with engine.connect() as conn:
        result = await conn.execute(text("SELECT email, role, is_active, hashed_password FROM users"))
        return {r.email: (r.role, r.is_active, r.hashed_password) for r in result}


async def test_concurrent_commands_each_get_their_own_outcome(
    committing_sessions: SessionFactory, engine: AsyncEngine
) -> None:
    groups = ProvisionGroups(committing_sessions)
    password_hash = hash_password("grouped")
    await groups.provision(ProvisionUser(email="old@example.com", role="viewer"))
    await groups.provision(ProvisionUser(email="same@example.com", role="member"))
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE users SET is_active = false WHERE email = 'old@example.com'"))

    outcomes = await asyncio.gather(
        groups.provision(ProvisionUser(email="new@example.com", role="admin", password_hash=password_hash)),
        groups.provision(ProvisionUser(email="OLD@example.com", role="viewer")),
        groups.provision(ProvisionUser(email="same@example.com", role="member")),
        *(groups.provision(ProvisionUser(email=f"n{i}@example.com", role="member")) for i in range(20)),
    )

    assert [o.status for o in outcomes[:3]] == ["created", "updated", "unchanged"]
    assert outcomes[1].as_result() == {
        "status": "updated",
        "email": "old@example.com",
        "user_id": outcomes[1].user_id,
        "role": "viewer",
        "is_active": True,
    }
    assert {o.status for o in outcomes[3:]} == {"created"}
    assert len({o.user_id for o in outcomes}) == len(outcomes)
    rows = await _rows(engine)
    assert rows["new@example.com"] == ("admin", True, password_hash)
    assert rows["old@example.com"] == ("viewer", True, None)
    assert len(rows) == 23


async def test_the_same_email_twice_at_once_goes_into_two_groups(
    committing_sessions: SessionFactory, engine: AsyncEngine
) -> None:
    groups = ProvisionGroups(committing_sessions)
    outcomes = await asyncio.gather(
        groups.provision(ProvisionUser(email="twin@example.com", role="member")),
        groups.provision(ProvisionUser(email="TWIN@example.com", role="admin")),
    )
    assert [o.status for o in outcomes] == ["created", "updated"]
    assert await _rows(engine) == {"twin@example.com": ("admin", True, None)}


async def test_a_group_that_fails_for_a_non_transient_reason_sends_its_jobs_to_run_alone(
    committing_sessions: SessionFactory, engine: AsyncEngine
) -> None:
    groups = ProvisionGroups(committing_sessions)
    async with engine.begin() as conn:  # a constraint the group will trip over, for real
        await conn.execute(text("ALTER TABLE users ADD CONSTRAINT no_bad CHECK (email NOT LIKE 'bad%')"))
    try:
        results = await asyncio.gather(
            groups.provision(ProvisionUser(email="bad@example.com", role="member")),
            groups.provision(ProvisionUser(email="good@example.com", role="member")),
            return_exceptions=True,
        )
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE users DROP CONSTRAINT no_bad"))
    assert all(isinstance(r, RunAlone) for r in results)
    assert await _rows(engine) == {}


async def test_sealed_passwords_never_join_a_group(committing_sessions: SessionFactory) -> None:
    token = "gAAAAA" + "x" * 120
    with pytest.raises(RunAlone):
        await ProvisionGroups(committing_sessions).provision(
            ProvisionUser(email="s@example.com", role="member", password_sealed=token)
        )


def _recording_writes(
    groups: ProvisionGroups, first_write_started: asyncio.Event, first_write_may_finish: asyncio.Event
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


def _provision(groups: ProvisionGroups, *names: str) -> list[asyncio.Task[UserOutcome]]:
    return [
        asyncio.create_task(groups.provision(ProvisionUser(email=f"{name}@example.com", role="member")))
        for name in names
    ]


@pytest.mark.parametrize(("window", "expected_sizes"), [(0.5, [2, 5]), (0.0, [2, 3, 2])])
async def test_under_load_a_group_collects_for_the_window(
    committing_sessions: SessionFactory, window: float, expected_sizes: list[int]
) -> None:
    groups = ProvisionGroups(committing_sessions, window=window)
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
    groups = ProvisionGroups(committing_sessions, window=30.0)
    for name in ("first", "second"):
        outcome = await asyncio.wait_for(
            groups.provision(ProvisionUser(email=f"{name}@example.com", role="member")), timeout=10
        )
        assert outcome.status == "created"
