"""Bulk provisioning: `provision_users` batches on a real worker in-process."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from arq.connections import ArqRedis
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.ids import new_id
from tests.support.queries import provisioned_users
from tests.support.settings import make_settings
from tests.support.worker_runner import run_burst
from worker import tasks
from worker.client import ProvisioningClient
from worker.db.session import create_session_factory
from worker.jobs.errors import JobFailed
from worker.passwords.policy import hash_password
from worker.runtime.context import JobContext
from worker.services.erasure import ErasureKeys
from worker.settings import Settings

pytestmark = pytest.mark.usefixtures("committing_sessions")


async def _batch(redis: ArqRedis, settings: Settings, users: list[object]) -> dict[str, object]:
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    job = await client.enqueue("provision_users", job_id=new_id(), users=users)
    await run_burst(settings)
    return await job.result(timeout=5)  # type: ignore[no-any-return]


async def test_a_mixed_batch_applies_the_valid_entries_and_reports_the_rest(
    redis: ArqRedis, settings: Settings, engine: AsyncEngine
) -> None:
    password_hash = hash_password("bulk-pw")
    result = await _batch(
        redis,
        settings,
        [
            {"email": "a@example.com", "role": "admin"},
            {"email": "not-an-email", "role": "admin"},
            {"email": "b@example.com", "role": "viewer", "password_hash": password_hash},
            {"email": "c@example.com", "role": "owner"},
            {"email": "d@example.com", "role": "member", "password_hash": "hunter2-bulk"},
            "not an object",
            {"email": "e@example.com", "role": "member", "extra": 1},
        ],
    )
    assert (result["created"], result["updated"], result["unchanged"], result["rejected"]) == (2, 0, 0, 5)
    assert [r["index"] for r in result["rejections"]] == [1, 3, 4, 5, 6]  # type: ignore[attr-defined]
    errors = [r["error"] for r in result["rejections"]]  # type: ignore[attr-defined]
    assert "email: value is not a valid email address" in errors[0]
    assert "role: Input should be 'admin', 'member' or 'viewer'" in errors[1]
    assert "password_hash: must be an argon2id PHC string" in errors[2]
    assert "hunter2-bulk" not in json.dumps(result)
    assert await provisioned_users(engine) == {
        "a@example.com": ("admin", True, None),
        "b@example.com": ("viewer", True, password_hash),
    }


async def test_running_a_batch_again_changes_nothing_and_updates_what_differs(
    redis: ArqRedis, settings: Settings, engine: AsyncEngine
) -> None:
    batch: list[object] = [{"email": f"u{i}@example.com", "role": "member"} for i in range(50)]
    first = await _batch(redis, settings, batch)
    again = await _batch(redis, settings, batch)
    changed = await _batch(redis, settings, [{"email": "u1@example.com", "role": "admin"}, *batch[2:5]])
    assert (first["created"], first["updated"], first["unchanged"]) == (50, 0, 0)
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 50)
    assert (changed["created"], changed["updated"], changed["unchanged"]) == (0, 1, 3)
    assert len(await provisioned_users(engine)) == 50


async def test_a_batch_reactivates_and_keeps_a_stored_password_when_none_is_given(
    redis: ArqRedis, settings: Settings, engine: AsyncEngine
) -> None:
    password_hash = hash_password("kept")
    await _batch(
        redis, settings, [{"email": "r@example.com", "role": "member", "password_hash": password_hash}]
    )
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE users SET is_active = false"))
    result = await _batch(redis, settings, [{"email": "r@example.com", "role": "member"}])
    assert result["updated"] == 1
    assert await provisioned_users(engine) == {"r@example.com": ("member", True, password_hash)}


async def test_duplicates_and_case_variants_in_one_batch_are_rejected_after_the_first(
    redis: ArqRedis, settings: Settings, engine: AsyncEngine
) -> None:
    result = await _batch(
        redis,
        settings,
        [
            {"email": "Dup@Example.com", "role": "admin"},
            {"email": "dup@example.com", "role": "viewer"},
            {"email": "DUP@EXAMPLE.COM", "role": "member"},
            {"email": "other@example.com", "role": "member"},
        ],
    )
    assert (result["created"], result["rejected"]) == (2, 2)
    assert result["rejections"] == [
        {"index": 1, "error": "email: duplicate of entry 0"},
        {"index": 2, "error": "email: duplicate of entry 0"},
    ]
    assert await provisioned_users(engine) == {
        "Dup@example.com": ("admin", True, None),
        "other@example.com": ("member", True, None),
    }


async def test_a_case_variant_of_an_existing_user_updates_it(
    redis: ArqRedis, settings: Settings, engine: AsyncEngine
) -> None:
    await _batch(redis, settings, [{"email": "case@example.com", "role": "viewer"}])
    result = await _batch(redis, settings, [{"email": "CASE@example.com", "role": "admin"}])
    assert (result["created"], result["updated"]) == (0, 1)
    # One user, spelled as the newest command spells it.
    assert await provisioned_users(engine) == {"CASE@example.com": ("admin", True, None)}


async def test_the_maximum_batch_size_is_enforced_and_nothing_is_written(
    redis: ArqRedis, database_url: str, engine: AsyncEngine
) -> None:
    settings = make_settings(database_url, bulk_max_batch=10)
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    too_big = await client.enqueue(
        "provision_users",
        job_id=new_id(),
        users=[{"email": f"m{i}@example.com", "role": "member"} for i in range(11)],
    )
    at_limit = await client.enqueue(
        "provision_users",
        job_id=new_id(),
        users=[{"email": f"m{i}@example.com", "role": "member"} for i in range(10)],
    )
    worker = await run_burst(settings)
    assert (worker.jobs_failed, worker.jobs_retried) == (1, 0)
    with pytest.raises(JobFailed, match=r"11 users in one batch, more than BULK_MAX_BATCH \(10\): split it"):
        await too_big.result(timeout=5)
    assert (await at_limit.result(timeout=5))["created"] == 10
    assert len(await provisioned_users(engine)) == 10


async def test_an_empty_or_shapeless_batch_fails_the_job(redis: ArqRedis, settings: Settings) -> None:
    empty = await redis.enqueue_job(
        "provision_users", users=[], _job_id=new_id(), _queue_name=settings.queue_name
    )
    shapeless = await redis.enqueue_job(
        "provision_users", users={"a": 1}, _job_id=new_id(), _queue_name=settings.queue_name
    )
    assert empty is not None
    assert shapeless is not None
    await run_burst(settings)
    with pytest.raises(JobFailed, match="users: List should have at least 1 item"):
        await empty.result(timeout=5)
    with pytest.raises(JobFailed, match="users: Input should be a valid list"):
        await shapeless.result(timeout=5)


@pytest.mark.parametrize(("slots", "most_at_once"), [(1, 1), (3, 3)])
async def test_bulk_jobs_write_a_few_at_a_time(
    settings: Settings, engine: AsyncEngine, slots: int, most_at_once: int
) -> None:
    checked_out, peak = 0, 0

    def checkout(*_: object) -> None:
        nonlocal checked_out, peak
        checked_out += 1
        peak = max(peak, checked_out)

    def checkin(*_: object) -> None:
        nonlocal checked_out
        checked_out -= 1

    event.listen(engine.sync_engine.pool, "checkout", checkout)
    event.listen(engine.sync_engine.pool, "checkin", checkin)
    ctx: JobContext = {
        "settings": settings,
        "session_factory": create_session_factory(engine),
        "erasure": ErasureKeys(settings.erasure_key_list),
        "bulk_slots": asyncio.Semaphore(slots),
    }
    try:
        results = await asyncio.gather(
            *(
                tasks.provision_users(
                    {**ctx, "job_id": new_id(), "enqueue_time": datetime.now(UTC)},
                    users=[{"email": f"slot{job}-{i}@example.com", "role": "member"} for i in range(200)],
                )
                for job in range(6)
            )
        )
    finally:
        event.remove(engine.sync_engine.pool, "checkout", checkout)
        event.remove(engine.sync_engine.pool, "checkin", checkin)
    assert [r["created"] for r in results] == [200] * 6
    assert peak == most_at_once
