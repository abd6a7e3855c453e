"""UserRepository's own writes go through the merge: keyed, stamped by the client's clock, never committed."""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.integration.repositories.test_user import RETENTION, _apply, _command
from worker.jobs.stamps import CLOCK, MICROS
from worker.repositories.user import UserRepository

_STAMPS = text(
    "SELECT provisioned_as_of, provisioned_job_id, role_as_of, active_as_of FROM user_states WHERE key = :key"
)


async def test_create_user_writes_the_person_s_stamps_from_the_client_s_clock(
    db_session: AsyncSession,
) -> None:
    users = UserRepository(db_session)
    before = CLOCK.now()
    created = await users.create_user(email="Ada@EXAMPLE.com", role="admin", retention=RETENTION)
    after = CLOCK.now()

    assert (created.status, created.email, created.role, created.is_active) == (
        "created",
        "Ada@example.com",  # normalised as a payload would be: the domain lower-cased
        "admin",
        True,
    )
    as_of, job_id, role_as_of, active_as_of = (
        await db_session.execute(_STAMPS, {"key": "ada@example.com"})
    ).one()
    assert before < as_of < after
    assert role_as_of == active_as_of == as_of
    assert re.fullmatch(r"[0-9a-f]{32}", job_id)  # a fresh job id of its own


async def test_a_newer_job_wins_over_a_repository_write_and_an_older_one_does_not(
    db_session: AsyncSession,
) -> None:
    users = UserRepository(db_session)
    older = CLOCK.now()
    await users.create_user(email="grace@example.com", role="member", retention=RETENTION)

    (stale,) = await _apply(users, [_command("set_user_role", "grace@example.com", older, "admin")])
    assert stale.status == "superseded"
    (newer,) = await _apply(users, [_command("set_user_role", "grace@example.com", CLOCK.now(), "admin")])
    assert (newer.status, newer.role) == ("updated", "admin")

    updated = await users.update_user(email="grace@example.com", is_active=False, retention=RETENTION)
    assert (updated.status, updated.role, updated.is_active) == ("updated", "admin", False)
    deleted = await users.delete_user(email="GRACE@example.com", retention=RETENTION)
    assert deleted.status == "deleted"
    assert await users.get_user_by_key("grace@example.com") is None


async def test_a_repository_write_loses_to_a_newer_stamp(db_session: AsyncSession) -> None:
    users = UserRepository(db_session)
    ahead = CLOCK.now() + 60 * MICROS  # a job stamped by its system of record, a minute ahead of us
    (created,) = await _apply(users, [_command("provision_user", "alan@example.com", ahead, "admin")])

    refused = await users.delete_user(email="alan@example.com", retention=RETENTION)
    assert (refused.status, refused.user_id) == ("unchanged", created.user_id)  # the user stays
    demoted = await users.update_user(email="alan@example.com", role="member", retention=RETENTION)
    assert (demoted.status, demoted.role) == ("superseded", "admin")
    kept = await users.get_user_by_key("alan@example.com")
    assert kept is not None
    assert (kept.id, kept.role, kept.is_active) == (created.user_id, "admin", True)
