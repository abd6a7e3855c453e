"""Failed-job records on fakeredis: security events first, erasure by email, size limits, and no
password hash kept from a failed batch."""

from __future__ import annotations

from arq.connections import ArqRedis

from tests.support.failures import seed_failure
from tests.unit.conftest import FAKE_QUEUE
from worker.runtime.failures import (
    ARGUMENTS_LIMIT,
    MESSAGE_LIMIT,
    erase_failures,
    failed_job,
    failed_jobs,
    failed_key,
)

QUEUE = FAKE_QUEUE


async def _fail(redis: ArqRedis, job_id: str, function: str, email: str, *, security: bool = False) -> None:
    await seed_failure(
        redis,
        QUEUE,
        job_id,
        function,
        {"email": email, "as_of": 1_795_000_000_000_000},
        error_type="GaveUp",
        message="m",
        retention=3600,
        security=security,
    )


async def test_failed_deactivations_and_deletions_are_listed_first(fake_redis: ArqRedis) -> None:
    await _fail(fake_redis, "old-delete", "delete_user", "a@example.com", security=True)
    await _fail(fake_redis, "provision", "provision_user", "b@example.com")
    await _fail(fake_redis, "new-deactivate", "deactivate_user", "c@example.com", security=True)
    await _fail(fake_redis, "newest-provision", "provision_user", "d@example.com")

    listed = await failed_jobs(fake_redis, QUEUE)

    assert [f["job_id"] for f in listed] == ["new-deactivate", "old-delete", "newest-provision", "provision"]
    assert [f["security"] for f in listed] == [True, True, False, False]
    assert listed[0]["arguments"]["as_of"] == 1_795_000_000_000_000  # the stamp is kept for retry


async def test_erasing_an_email_removes_only_its_records(fake_redis: ArqRedis) -> None:
    await _fail(fake_redis, "one", "delete_user", "Ada@example.com")
    await _fail(fake_redis, "two", "set_user_role", "ada@example.com")
    await _fail(fake_redis, "other", "set_user_role", "bob@example.com")

    assert await erase_failures(fake_redis, QUEUE, "ADA@example.com") == 2

    assert [f["job_id"] for f in await failed_jobs(fake_redis, QUEUE)] == ["other"]
    assert await erase_failures(fake_redis, QUEUE, "nobody@example.com") == 0


async def test_huge_arguments_are_kept_as_their_size_and_digest(fake_redis: ArqRedis) -> None:
    huge = {"email": "x" * 5_000_000, "role": "admin"}
    await seed_failure(
        fake_redis,
        QUEUE,
        "huge",
        "provision_user",
        huge,
        error_type="InvalidPayload",
        message="m" * 100_000,
        retention=3600,
    )
    (record,) = await failed_jobs(fake_redis, QUEUE)
    assert record["arguments"] == {}
    assert record["arguments_omitted"]["bytes"] > 5_000_000
    assert len(record["arguments_omitted"]["sha256"]) == 64
    assert len(record["message"]) == MESSAGE_LIMIT + 1
    assert len(await fake_redis.get(failed_key(QUEUE, "huge"))) < ARGUMENTS_LIMIT


async def test_arguments_under_the_limit_are_kept_whole(fake_redis: ArqRedis) -> None:
    users = [{"email": f"u{n}@example.com", "role": "member"} for n in range(500)]  # about 20 KB
    await seed_failure(
        fake_redis,
        QUEUE,
        "batch",
        "provision_users",
        {"users": users},
        error_type="GaveUp",
        message="m",
        retention=3600,
    )
    (record,) = await failed_jobs(fake_redis, QUEUE)
    assert record["arguments"] == {"users": users}
    assert "arguments_omitted" not in record


HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"


async def test_batch_entries_lose_their_password_hashes_and_the_record_says_so(fake_redis: ArqRedis) -> None:
    await seed_failure(
        fake_redis,
        QUEUE,
        "batch-1",
        "provision_users",
        {
            "users": [
                {"email": "a@example.com", "role": "member", "password_hash": HASH},
                {"email": "b@example.com", "role": "admin"},
                "not an object",
            ]
        },
        retention=60,
    )
    raw = await fake_redis.get(failed_key(QUEUE, "batch-1"))
    assert raw is not None
    assert HASH.encode() not in raw
    record = await failed_job(fake_redis, QUEUE, "batch-1")
    assert record is not None
    assert record["password_dropped"] is True
    assert record["arguments"] == {
        "users": [
            {"email": "a@example.com", "role": "member"},
            {"email": "b@example.com", "role": "admin"},
            "not an object",
        ]
    }


async def test_a_batch_without_passwords_is_kept_whole(fake_redis: ArqRedis) -> None:
    users = [{"email": "a@example.com", "role": "member"}]
    await seed_failure(
        fake_redis, QUEUE, "batch-2", "provision_users", {"users": users}, job_try=2, retention=60
    )
    record = await failed_job(fake_redis, QUEUE, "batch-2")
    assert record is not None
    assert (record["password_dropped"], record["arguments"]) == (False, {"users": users})
