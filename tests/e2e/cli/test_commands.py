"""`python -m worker enqueue …` against a real worker process, real Redis and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from arq.connections import ArqRedis

from tests.support.cli import BOX_DRAWING, blocks
from tests.support.ids import new_id
from tests.support.processes import ROOT, run_module, start_worker, stop, worker_env
from worker.jobs.stamps import MICROS
from worker.security import hash_password
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
    env = worker_env(settings, columns=80)

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
    plain = run_module("worker", "history", email, env=env)
    assert [(row["status"], row["changes"]) for row in blocks(plain.stdout)] == [
        (["created"], ["provisioned: no → yes", "role: (none) → viewer", "active: (none) → yes"]),
        (["superseded"], ["-"]),
        (["updated"], ["role: viewer → admin"]),
    ]
    assert blocks(plain.stdout)[0]["as of"] == ["2026-11-26T08:00:00Z"]

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
def test_history_piped_is_plain_text_with_each_status_and_its_changes(
    settings: Settings, worker_process: subprocess.Popen[bytes]
) -> None:
    email = "piped@example.com"
    for function, extra in [
        ("provision_user", ["--role", "member", "--password-hash", hash_password("first passphrase")]),
        ("update_user", ["--role", "admin", "--active", "false"]),
        ("delete_user", []),
    ]:
        done = _cli(settings, function, "--email", email, *extra, "--job-id", new_id(), "--wait")
        assert done.returncode == 0, done.stderr
    env = worker_env(settings)
    env.pop("COLUMNS", None)  # a pipe's width: rich's default, unless a terminal is around
    env.pop("FORCE_COLOR", None)

    piped = subprocess.run(  # stdout and stderr piped, no terminal anywhere
        [sys.executable, "-m", "worker", "history", email],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert piped.returncode == 0, piped.stderr
    assert not BOX_DRAWING & set(piped.stdout)
    assert "\x1b[" not in piped.stdout
    assert all(len(line) <= 80 for line in piped.stdout.splitlines())
    rows = blocks(piped.stdout)
    assert [(row["function"], row["status"], row["changes"]) for row in rows] == [
        (
            ["provision_user"],
            ["created"],
            ["provisioned: no → yes", "role: (none) → member", "active: (none) → yes", "password changed"],
        ),
        (["update_user"], ["updated"], ["role: member → admin", "active: yes → no"]),
        (
            ["delete_user"],
            ["deleted"],
            ["provisioned: yes → no", "role: admin → (none)", "active: no → (none)", "password changed"],
        ),
    ]
    kept = json.loads(run_module("worker", "history", email, "--json", env=env).stdout)
    assert [row["user id"] for row in rows] == [[str(kept[0]["user_id"])]] * 3
    assert [row["job id"] for row in rows] == [[record["job_id"]] for record in kept]
    assert [row["as of"] for row in rows] == [
        [datetime.fromtimestamp(record["as_of"] // MICROS, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")]
        for record in kept
    ]


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
