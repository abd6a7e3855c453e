"""`python -m worker enqueue …` against a real worker process, real Redis and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from arq.connections import ArqRedis

from tests.conftest import new_id
from tests.processes import run_module, start_worker, stop, worker_env
from worker.settings import Settings


@pytest.fixture
def worker_process(settings: Settings, redis: ArqRedis, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`arq worker.main.WorkerSettings` as operators run it; stopped with SIGTERM afterwards."""
    process = start_worker(settings, tmp_path / "worker.log")
    try:
        yield process
    finally:
        stop(process)


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return run_module("worker", "enqueue", *args, env=worker_env(settings))


@pytest.mark.usefixtures("committing_sessions")
def test_enqueue_and_wait_prints_the_result(
    settings: Settings, worker_process: subprocess.Popen[bytes]
) -> None:
    job_id = new_id()
    done = _cli(
        settings,
        "provision_user",
        "--email",
        "cli@example.com",
        "--role",
        "admin",
        "--job-id",
        job_id,
        "--wait",
        "--timeout",
        "30",
    )
    assert done.returncode == 0, done.stderr
    enqueued, result = done.stdout.strip().splitlines()
    assert enqueued == f"enqueued provision_user as job {job_id} on {settings.queue_name}"
    assert json.loads(result)["status"] == "created"

    again = _cli(
        settings,
        "provision_user",
        "--email",
        "CLI@example.com",
        "--role",
        "admin",
        "--job-id",
        new_id(),
        "--wait",
    )
    assert json.loads(again.stdout.strip().splitlines()[-1])["status"] == "unchanged"

    failed = _cli(
        settings,
        "set_user_role",
        "--email",
        "ghost@example.com",
        "--role",
        "viewer",
        "--job-id",
        new_id(),
        "--wait",
    )
    assert failed.returncode == 1
    assert (
        failed.stderr.strip()
        == "failed: UserNotFound: set_user_role: no user with email ghost@example.com: provision it first"
    )


def test_an_invalid_payload_is_refused_before_enqueueing(settings: Settings, redis: ArqRedis) -> None:
    done = _cli(settings, "provision_user", "--email", "nope", "--role", "admin", "--job-id", new_id())
    assert done.returncode == 2
    assert done.stderr.startswith(
        "error: provision_user: invalid payload: email: value is not a valid email address"
    )
    assert done.stdout == ""


def test_enqueue_without_wait_prints_the_job_id(settings: Settings, redis: ArqRedis) -> None:
    job_id = new_id()
    done = _cli(settings, "delete_user", "--email", "x@example.com", "--job-id", job_id)
    assert done.returncode == 0
    assert done.stdout.strip() == f"enqueued delete_user as job {job_id} on {settings.queue_name}"
