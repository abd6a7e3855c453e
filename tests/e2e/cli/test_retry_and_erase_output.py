"""`python -m worker retry` and `erase` as operators read them (without `--json`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from arq.connections import ArqRedis
from arq.jobs import Job

from tests.support.cli import queue_job_id, run_cli
from tests.support.failures import seed_failure
from worker.jobs.serialization import deserialize
from worker.runtime.failures import failed_job
from worker.settings import Settings

pytestmark = pytest.mark.slow

KEPT_AS_OF = "2020-01-01T00:00:00Z"


async def _fail(redis: ArqRedis, settings: Settings, email: str) -> str:
    job_id = queue_job_id(settings)
    await seed_failure(
        redis,
        settings.queue_name,
        job_id,
        "set_user_role",
        {"email": email, "role": "admin", "as_of": KEPT_AS_OF},
        job_try=5,
    )
    return job_id


async def _kwargs(redis: ArqRedis, settings: Settings, job_id: str) -> dict[str, object]:
    """The queued job's keyword arguments."""
    info = await Job(job_id, redis, _queue_name=settings.queue_name, _deserializer=deserialize).info()
    assert info is not None, f"job {job_id} is not queued"
    return dict(info.kwargs)


async def _as_of(redis: ArqRedis, settings: Settings, job_id: str) -> int:
    """The queued job's stamp (microseconds since the epoch)."""
    return int(str((await _kwargs(redis, settings, job_id))["as_of"]))


async def test_retry_enqueues_the_same_command_again_under_a_new_id(
    settings: Settings, redis: ArqRedis, tmp_path: Path
) -> None:
    failed = await _fail(redis, settings, "role@example.com")
    kept, now = queue_job_id(settings), queue_job_id(settings)
    done = await run_cli(settings, "retry", failed, "--new-job-id", kept, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"enqueued set_user_role again as job {kept} (was {failed})"
    restamped = await run_cli(settings, "retry", failed, "--new-job-id", now, "--as-of", "now", cwd=tmp_path)
    assert restamped.returncode == 0, restamped.stderr
    reference_id = queue_job_id(settings)
    reference = await run_cli(
        settings, "enqueue", "set_user_role", "--email", "x@example.com", "--role", "admin",
        "--as-of", KEPT_AS_OF, "--job-id", reference_id, cwd=tmp_path,
    )  # fmt: skip
    assert reference.returncode == 0, reference.stderr
    assert await _as_of(redis, settings, kept) == await _as_of(redis, settings, reference_id)
    # The whole stamp: the original job id breaks ties, unless the command is re-stamped as the newest.
    assert await _kwargs(redis, settings, kept) | {"as_of": 0} == {
        "email": "role@example.com",
        "role": "admin",
        "as_of": 0,
        "stamp_job_id": failed,
    }
    assert "stamp_job_id" not in await _kwargs(redis, settings, now)
    assert await _as_of(redis, settings, now) > await _as_of(redis, settings, kept)


async def test_retry_refuses_an_id_that_a_live_job_holds(
    settings: Settings, redis: ArqRedis, tmp_path: Path
) -> None:
    failed = await _fail(redis, settings, "twice@example.com")
    taken = queue_job_id(settings)
    assert (await run_cli(settings, "retry", failed, "--new-job-id", taken, cwd=tmp_path)).returncode == 0
    again = await run_cli(settings, "retry", failed, "--new-job-id", taken, cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr.startswith("error: cannot retry: ")
    assert taken in again.stderr
    assert await redis.zcard(settings.queue_name) == 1


async def test_erase_reports_what_it_removed_including_failed_job_records(
    settings: Settings, redis: ArqRedis, tmp_path: Path
) -> None:
    failed = await _fail(redis, settings, "Erased@Example.com")
    done = await run_cli(settings, "erase", "erased@example.com", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "erased erased@example.com: 0 tombstone/intent row(s), 0 audit row(s), 1 failed-job record(s)"
    )
    assert await failed_job(redis, settings.queue_name, failed) is None


async def test_erase_without_erasure_keys_refuses_and_names_the_setting(
    settings: Settings, redis: ArqRedis, tmp_path: Path
) -> None:
    failed = await _fail(redis, settings, "kept@example.com")
    refused = await run_cli(settings, "erase", "kept@example.com", cwd=tmp_path, erasure_keys="")
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: erase needs ERASURE_KEYS")
    assert await failed_job(redis, settings.queue_name, failed) is not None


async def test_erase_and_history_refuse_an_email_with_no_identity_key(
    settings: Settings, tmp_path: Path
) -> None:
    for command in ("erase", "history"):
        refused = await run_cli(settings, command, "\ufb01nn@example.com", cwd=tmp_path)
        assert refused.returncode == 2, command
        assert "compatibility characters" in refused.stderr, command
