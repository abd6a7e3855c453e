"""`python -m worker status | job | failed | retry` against a real worker, Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from unittest.mock import ANY

import pytest
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.failures import seed_failure
from tests.support.ids import new_id
from tests.support.processes import ROOT, start_worker, stop, wait_until, worker_env
from worker import tasks
from worker.client import ProvisioningClient
from worker.db.session import create_session_factory
from worker.jobs.errors import JobFailed
from worker.runtime.context import WorkerContext
from worker.runtime.failures import failed_key
from worker.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("committing_sessions")]


async def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        *args,
        cwd=ROOT,
        env={**worker_env(settings), "COLUMNS": "80"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return subprocess.CompletedProcess(list(args), process.returncode or 0, out.decode(), err.decode())


async def test_an_expired_intent_is_listed_inspected_and_retried(
    settings: Settings, redis: ArqRedis, engine: AsyncEngine, tmp_path: Path
) -> None:
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        early = await client.set_user_role(email="later@example.com", role="admin", job_id=new_id())
        assert (await early.result(timeout=30))["status"] == "pending"
        # The worker's cron job runs this every minute; here at once, with a 1 s window.
        await asyncio.sleep(1.1)
        ctx: WorkerContext = {
            "settings": settings.model_copy(update={"intent_window": 1}),
            "redis": redis,
            "session_factory": create_session_factory(engine),
        }
        assert await tasks.expire_intents(ctx) == {"expired": 1}
        assert await tasks.expire_intents(ctx) == {"expired": 0}

        failed = json.loads((await _cli(settings, "failed", "--json")).stdout)
        assert [(f["job_id"], f["function"], f["error_type"]) for f in failed] == [
            (early.job_id, "set_user_role", "UserNotFound")
        ]
        assert (
            "no user with email later@example.com was provisioned within INTENT_WINDOW"
            in failed[0]["message"]
        )
        report = json.loads((await _cli(settings, "job", early.job_id, "--json")).stdout)
        assert (report["state"], report["success"], report["tries"]) == ("complete", True, 1)
        human = await _cli(settings, "failed")
        assert early.job_id in human.stdout
        assert "UserNotFound" in human.stdout

        # The expired intent no longer applies: the user is created with the provision's own role.
        created = await client.provision_user(email="later@example.com", role="viewer", job_id=new_id())
        assert (await created.result(timeout=30))["role"] == "viewer"
        kept = json.loads(
            (await _cli(settings, "retry", early.job_id, "--new-job-id", new_id(), "--json")).stdout
        )
        assert kept["retried"] == early.job_id
        # Retried at its own place: older than the provision, which keeps its role.
        assert (await client.job(kept["job_id"]).result(timeout=30))["status"] == "superseded"
        again_id = new_id()
        now = json.loads(
            (
                await _cli(
                    settings, "retry", early.job_id, "--as-of", "now", "--new-job-id", again_id, "--json"
                )
            ).stdout
        )
        assert now["job_id"] == again_id
        result = await client.job(again_id).result(timeout=30)
        assert (result["status"], result["role"]) == ("updated", "admin")

        status = json.loads((await _cli(settings, "status", "--json")).stdout)
        assert (status["queued"], status["in_progress"], status["live_workers"]) == (0, 0, 1)
        assert [f["job_id"] for f in status["recent_failures"]] == [early.job_id]
    finally:
        stop(worker)


async def _kept(redis: ArqRedis, settings: Settings, job_id: str) -> bool:
    return bool(await redis.exists(failed_key(settings.queue_name, job_id)))


async def test_failures_are_kept_longer_than_results(
    settings: Settings, redis: ArqRedis, tmp_path: Path
) -> None:
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    worker = start_worker(settings, tmp_path / "worker.log", keep_result=60, failed_job_retention=86_400)
    try:
        job = await client.set_user_role(
            email="ghost@example.com", role="admin", job_id=new_id(), as_of="2099-01-01T00:00:00Z"
        )
        with pytest.raises(JobFailed, match="StampRefused"):
            await job.result(timeout=30)
        await wait_until(lambda: _kept(redis, settings, job.job_id), within=10, what="the failure record")
    finally:
        stop(worker)
    assert await redis.ttl(f"arq:result:{job.job_id}") <= 60
    assert await redis.ttl(failed_key(settings.queue_name, job.job_id)) > 86_000


async def test_retrying_an_unknown_job_says_so(settings: Settings, redis: ArqRedis) -> None:
    done = await _cli(settings, "retry", "no-such-job")
    assert done.returncode == 2
    assert "no failed job no-such-job is kept" in done.stderr


async def test_a_failed_job_with_a_password_is_kept_without_it_and_not_retried(
    settings: Settings, redis: ArqRedis, tmp_path: Path
) -> None:
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    token = "gAAAAA" + "Q" * 140  # sealed with no key the worker holds: fails
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        job = await client.enqueue(
            "provision_user", job_id=new_id(), email="pw@example.com", role="admin", password_sealed=token
        )
        with pytest.raises(JobFailed):
            await job.result(timeout=30)
        await wait_until(lambda: _kept(redis, settings, job.job_id), within=10, what="the failure record")
    finally:
        stop(worker)
    raw = await redis.get(failed_key(settings.queue_name, job.job_id))
    assert raw is not None
    assert token.encode() not in raw
    assert json.loads(raw)["arguments"] == {
        "email": "pw@example.com",
        "role": "admin",
        "as_of": ANY,
        "stamp_job_id": job.job_id,
    }
    refused = await _cli(settings, "retry", job.job_id)
    assert refused.returncode == 2
    assert "carried a password, which is never kept" in refused.stderr


async def test_a_failure_whose_arguments_were_too_large_to_keep_is_not_retried(
    settings: Settings, redis: ArqRedis
) -> None:
    job_id = new_id()
    await seed_failure(
        redis,
        settings.queue_name,
        job_id,
        "provision_user",
        {"email": "x" * 200_000, "role": "admin"},
        error_type="InvalidPayload",
        message="provision_user: invalid payload: email: value is not a valid email address",
    )
    refused = await _cli(settings, "retry", job_id)
    assert refused.returncode == 2
    assert f"job {job_id}'s arguments (200030 bytes, sha256 " in refused.stderr
    assert "were too large to keep: enqueue it again from its source" in refused.stderr
