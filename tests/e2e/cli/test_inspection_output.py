"""What operators read from `python -m worker status | job | failed | health` without `--json`, piped:
plain text at 80 columns (`--table` draws the boxes anyway)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from arq.connections import ArqRedis

from tests.support.cli import BOX_DRAWING, blocks, queue_job_id, run_cli
from tests.support.failures import seed_failure
from worker.client import ProvisioningClient
from worker.runtime.health import HealthReporter
from worker.settings import Settings

pytestmark = pytest.mark.slow


def _row(output: str, title: str) -> list[str]:
    """The cells of the first data row of the table titled `title` (boxed or plain)."""
    lines = output.splitlines()
    start = lines.index(title)
    data = [line for line in lines[start + 1 :] if line.startswith("│")]  # a boxed table's header row has ┃
    if not data:  # plain: the header line, then the rows
        return lines[start + 2].split()
    return [cell.strip() for cell in data[0].strip("│ ").split("│")]


async def test_status_counts_ready_deferred_and_running_jobs_in_a_table(
    settings: Settings, redis: ArqRedis, tmp_path: Path
) -> None:
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    running = await client.provision_user(
        email="run@example.com", role="member", job_id=queue_job_id(settings)
    )
    await client.provision_user(email="ready@example.com", role="member", job_id=queue_job_id(settings))
    await redis.enqueue_job(
        "provision_user",
        email="later@example.com",
        role="member",
        _job_id=queue_job_id(settings),
        _queue_name=settings.queue_name,
        _defer_by=3600,
    )
    await redis.set(f"arq:in-progress:{running.job_id}", b"1", px=60_000)  # as a worker marks a job it runs
    try:
        plain = await run_cli(settings, "status", cwd=tmp_path)
        table = await run_cli(settings, "status", "--table", cwd=tmp_path)
        as_json = await run_cli(settings, "status", "--json", cwd=tmp_path)
    finally:
        await redis.delete(f"arq:in-progress:{running.job_id}")
    assert plain.returncode == 0, plain.stderr
    assert not BOX_DRAWING & set(plain.stdout)
    assert plain.stdout.splitlines()[1].split() == ["queued", "deferred", "in", "progress", "live", "workers"]
    assert _row(plain.stdout, f"queue {settings.queue_name}") == ["1", "1", "1", "0"]
    assert "recent failures: none" in plain.stdout
    assert table.returncode == 0, table.stderr
    assert "┃ queued ┃ deferred ┃ in progress ┃ live workers ┃" in table.stdout
    assert _row(table.stdout, f"queue {settings.queue_name}") == ["1", "1", "1", "0"]
    counts = json.loads(as_json.stdout)
    assert {name: counts[name] for name in ("queued", "deferred", "in_progress", "live_workers")} == {
        "queued": 1,
        "deferred": 1,
        "in_progress": 1,
        "live_workers": 0,
    }


async def test_a_job_nobody_knows_is_reported_not_found(settings: Settings, tmp_path: Path) -> None:
    job_id = queue_job_id(settings)
    done = await run_cli(settings, "job", job_id, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"job id: {job_id}", "state:  not_found"]


async def test_a_failure_kept_after_its_result_expired_reads_as_failed(
    settings: Settings, redis: ArqRedis, tmp_path: Path
) -> None:
    job_id = queue_job_id(settings)
    await seed_failure(
        redis,
        settings.queue_name,
        job_id,
        "deactivate_user",
        {"email": "gone@example.com"},
        job_try=3,
        security=True,
    )
    report = json.loads((await run_cli(settings, "job", job_id, "--json", cwd=tmp_path)).stdout)
    assert report == {
        "job_id": job_id,
        "state": "failed",
        "function": "deactivate_user",
        "tries": 3,
        "success": False,
        "error": "DatabaseUnavailable: cannot reach PostgreSQL",
    }
    listed = await run_cli(settings, "failed", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith(f"failed jobs on {settings.queue_name}\n\n")  # too wide at 80: blocks
    (failure,) = blocks(listed.stdout)
    assert {name: lines for name, lines in failure.items() if name != "failed at"} == {
        "job id": [job_id],
        "function": ["deactivate_user"],
        "try": ["3"],
        "error type": ["DatabaseUnavailable"],
        "message": ["cannot reach PostgreSQL"],
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", failure["failed at"][0])


async def test_health_without_a_worker_is_unhealthy_and_says_why(settings: Settings, tmp_path: Path) -> None:
    done = await run_cli(settings, "health", cwd=tmp_path)
    assert done.returncode == 1
    workers, database, verdict = done.stdout.splitlines()
    assert workers == f"live workers on queue {settings.queue_name}: none"
    assert database.startswith("database: ")
    assert verdict == "UNHEALTHY"


async def test_health_names_the_live_worker_and_how_recently_it_was_seen(
    settings: Settings, redis: ArqRedis, tmp_path: Path
) -> None:
    reporter = HealthReporter(redis, settings)
    await reporter.start()
    try:
        started = time.monotonic()
        done = await run_cli(settings, "health", cwd=tmp_path)
        elapsed = time.monotonic() - started
    finally:
        await reporter.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    title, header, worker, database, verdict = done.stdout.splitlines()
    assert title == f"live workers on queue {settings.queue_name}"
    assert header.split() == ["worker", "last", "seen", "started"]
    seen = re.fullmatch(
        rf"{re.escape(reporter.worker_id)} +(\d+\.\d) s ago +\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ", worker
    )
    assert seen is not None, worker
    assert float(seen.group(1)) <= elapsed + settings.health_check_interval
    assert database.startswith("database: ")
    assert verdict == "healthy"
    after = await run_cli(settings, "health", "--json", cwd=tmp_path)
    assert after.returncode == 1
    assert json.loads(after.stdout)["workers"] == []  # a clean stop removes the record at once
