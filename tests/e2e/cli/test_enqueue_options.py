"""`python -m worker enqueue …` options: sealed passwords from stdin, numeric stamps, waiting in vain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from arq.connections import ArqRedis
from arq.jobs import Job
from cryptography.fernet import Fernet

from tests.support.cli import queue_job_id, run_cli
from worker.jobs.serialization import deserialize
from worker.settings import Settings

pytestmark = pytest.mark.slow


async def _arguments(redis: ArqRedis, settings: Settings, job_id: str) -> dict[str, Any]:
    info = await Job(job_id, redis, _queue_name=settings.queue_name, _deserializer=deserialize).info()
    assert info is not None, f"job {job_id} is not queued"
    return info.kwargs


async def test_a_password_from_stdin_is_sent_sealed_with_the_first_seal_key(
    settings: Settings, redis: ArqRedis, tmp_path: Path
) -> None:
    key = Fernet.generate_key().decode()
    job_id = queue_job_id(settings)
    done = await run_cli(
        settings,
        *("enqueue", "provision_user", "--email", "pw@example.com", "--role", "member"),
        *("--password-stdin", "--job-id", job_id),
        cwd=tmp_path,
        stdin="correct horse battery staple\nsecond line is ignored\n",
        seal_keys=key,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"enqueued provision_user as job {job_id} on {settings.queue_name}"
    raw = await redis.get(f"arq:job:{job_id}")
    assert raw is not None
    assert b"correct horse" not in raw
    sealed = (await _arguments(redis, settings, job_id))["password_sealed"]
    assert Fernet(key.encode()).decrypt(sealed.encode()) == b"correct horse battery staple"


async def test_two_ways_of_giving_a_password_are_refused_before_enqueueing(
    settings: Settings, redis: ArqRedis, tmp_path: Path
) -> None:
    done = await run_cli(
        settings,
        *("enqueue", "provision_user", "--email", "pw@example.com", "--role", "member"),
        *(
            "--password-hash",
            "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
            "--password-stdin",
        ),
        cwd=tmp_path,
        stdin="secret\n",
        seal_keys=Fernet.generate_key().decode(),
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip() == "error: give one password: --password-hash, --ask-password or --password-stdin"
    )
    assert await redis.zcard(settings.queue_name) == 0


async def test_a_numeric_as_of_is_microseconds_since_the_epoch(
    settings: Settings, redis: ArqRedis, tmp_path: Path
) -> None:
    stamped: list[object] = []
    for as_of in ("1700000000000000", "2023-11-14T22:13:20Z"):
        job_id = queue_job_id(settings)
        done = await run_cli(
            settings,
            *("enqueue", "deactivate_user", "--email", "stamp@example.com", "--as-of", as_of),
            *("--job-id", job_id),
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        stamped.append((await _arguments(redis, settings, job_id))["as_of"])
    assert stamped[0] == stamped[1]


async def test_waiting_without_a_worker_gives_up_and_asks_for_one(settings: Settings, tmp_path: Path) -> None:
    done = await run_cli(
        settings,
        *("enqueue", "delete_user", "--email", "nobody@example.com", "--wait", "--timeout", "0.3"),
        *("--job-id", queue_job_id(settings)),  # the run's cleanup removes the job it leaves queued
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert done.stdout.startswith("enqueued delete_user as job ")
    assert done.stderr.strip() == "error: no result after 0.3s: is a worker serving this queue?"


async def test_a_password_without_seal_keys_is_refused_naming_both_ways_out(
    settings: Settings, redis: ArqRedis, tmp_path: Path
) -> None:
    done = await run_cli(
        settings,
        *("enqueue", "provision_user", "--email", "pw@example.com", "--role", "member", "--password-stdin"),
        cwd=tmp_path,
        stdin="secret\n",
        seal_keys="",
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: a password can only be sent sealed: set SEAL_KEYS (the worker's keys), "
        "or send a password_hash instead"
    )
    assert await redis.zcard(settings.queue_name) == 0


@pytest.mark.parametrize(
    ("as_of", "fix"),
    [
        ("2023-11-14T22:13:20", "an RFC 3339 timestamp needs its offset (Z or ±hh:mm)"),
        ("v42", "must be an RFC 3339 timestamp (e.g. 2026-11-26T09:30:00.123456Z) or integer microseconds"),
    ],
)
async def test_an_as_of_that_is_not_an_instant_is_refused_naming_the_format(
    settings: Settings, redis: ArqRedis, tmp_path: Path, as_of: str, fix: str
) -> None:
    done = await run_cli(
        settings,
        *("enqueue", "deactivate_user", "--email", "stamp@example.com", "--as-of", as_of),
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: ")
    assert fix in done.stderr
    assert await redis.zcard(settings.queue_name) == 0
