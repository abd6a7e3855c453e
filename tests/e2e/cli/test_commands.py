"""`python -m worker enqueue …` against a real worker process, real Redis and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from arq.connections import ArqRedis

from tests.support.ids import new_id
from tests.support.processes import run_module, start_worker, stop, worker_env
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
        "cli@example.com",
        "--role",
        "admin",
        "--job-id",
        new_id(),
        "--wait",
    )
    assert json.loads(again.stdout.strip().splitlines()[-1])["status"] == "unchanged"

    early = _cli(
        settings,
        "set_user_role",
        "--email",
        "later@example.com",
        "--role",
        "viewer",
        "--job-id",
        new_id(),
        "--wait",
    )
    assert early.returncode == 0, early.stderr
    assert json.loads(early.stdout.strip().splitlines()[-1]) == {
        "status": "pending",
        "email": "later@example.com",
    }

    failed = _cli(
        settings,
        "set_user_role",
        "--email",
        "ghost@example.com",
        "--role",
        "viewer",
        "--as-of",
        "2099-01-01T00:00:00Z",
        "--job-id",
        new_id(),
        "--wait",
    )
    assert failed.returncode == 1
    assert failed.stderr.startswith("failed: StampRefused: set_user_role: as_of is ")
    assert "ahead of this worker's clock, more than MAX_CLOCK_SKEW (300s)" in failed.stderr


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


@pytest.mark.usefixtures("committing_sessions")
def test_history_shows_every_outcome_and_erase_removes_the_person(
    settings: Settings, worker_process: subprocess.Popen[bytes]
) -> None:
    email = "hist@example.com"
    for function, extra in [
        ("provision_user", ["--role", "viewer", "--as-of", "2026-11-26T08:00:00Z"]),
        ("set_user_role", ["--role", "admin", "--as-of", "2026-11-26T08:00:02Z"]),
        ("set_user_role", ["--role", "member", "--as-of", "2026-11-26T08:00:01Z"]),  # older: superseded
    ]:
        done = _cli(settings, function, "--email", email, *extra, "--job-id", new_id(), "--wait")
        assert done.returncode == 0, done.stderr
    env = worker_env(settings, columns=200)

    history = run_module("worker", "history", email.upper(), "--json", env=env)
    assert history.returncode == 0, history.stderr
    rows = json.loads(history.stdout)
    assert [(r["function"], r["status"], r["changes"]) for r in rows] == [
        (
            "provision_user",
            "created",
            {"provisioned": [False, True], "role": [None, "viewer"], "is_active": [None, True]},
        ),
        ("set_user_role", "superseded", {}),
        ("set_user_role", "updated", {"role": ["viewer", "admin"]}),
    ]
    assert rows[0]["as_of_time"] == "2026-11-26T08:00:00.000000+00:00"
    table = run_module("worker", "history", email, env=env)
    assert "superseded" in table.stdout
    assert "viewer → admin" in table.stdout

    refused = run_module("worker", "erase", email, env=env)
    assert refused.returncode == 2
    assert "a user with email hist@example.com exists: delete it first" in refused.stderr
    deleted = _cli(settings, "delete_user", "--email", email, "--job-id", new_id(), "--wait")
    assert json.loads(deleted.stdout.splitlines()[-1])["status"] == "deleted"
    erased = run_module("worker", "erase", email, "--json", env=env)
    assert erased.returncode == 0, erased.stderr
    assert json.loads(erased.stdout) == {"email": email, "stamp_rows": 1, "audit_rows": 4, "failed_jobs": 0}
    assert json.loads(run_module("worker", "history", email, "--json", env=env).stdout) == []


@pytest.mark.usefixtures("committing_sessions")
def test_enqueue_update_user_takes_true_and_false(
    settings: Settings, worker_process: subprocess.Popen[bytes]
) -> None:
    """`--active false` reaches the job as JSON false (deactivates), `--active true` reactivates."""
    created = _cli(settings, "provision_user", "--email", "flip@example.com", "--role", "viewer", "--wait")
    assert created.returncode == 0, created.stderr
    for flag, active in (("false", False), ("TRUE", True)):
        done = _cli(settings, "update_user", "--email", "flip@example.com", "--active", flag, "--wait")
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert (result["status"], result["is_active"], result["role"]) == ("updated", active, "viewer")
