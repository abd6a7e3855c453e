"""A failed `provision_users` batch is kept for `retry` without any entry's password hash."""

from __future__ import annotations

from arq.connections import ArqRedis

from worker.runtime.failures import failed_job, failed_key, record_failure

QUEUE = "unit:failures"
HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"


async def test_batch_entries_lose_their_password_hashes_and_the_record_says_so(fake_redis: ArqRedis) -> None:
    await record_failure(
        fake_redis,
        QUEUE,
        job_id="batch-1",
        function="provision_users",
        job_try=1,
        error_type="DatabaseUnavailable",
        message="cannot reach PostgreSQL",
        arguments={
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
    await record_failure(
        fake_redis,
        QUEUE,
        job_id="batch-2",
        function="provision_users",
        job_try=2,
        error_type="DatabaseUnavailable",
        message="cannot reach PostgreSQL",
        arguments={"users": users},
        retention=60,
    )
    record = await failed_job(fake_redis, QUEUE, "batch-2")
    assert record is not None
    assert (record["password_dropped"], record["arguments"]) == (False, {"users": users})
