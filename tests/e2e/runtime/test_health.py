"""`python -m worker health` against real worker processes, Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from arq.connections import ArqRedis

from tests.support.processes import ROOT, start_worker, stop, wait_until, worker_env
from tests.support.settings import make_settings
from worker.runtime.health import record_prefix
from worker.settings import Settings

pytestmark = pytest.mark.slow
INTERVAL = 1


async def _health(settings: Settings) -> subprocess.CompletedProcess[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        "health",
        "--json",
        cwd=ROOT,
        env=worker_env(settings, health_check_interval=INTERVAL),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return subprocess.CompletedProcess([], process.returncode or 0, out.decode(), err.decode())


async def _records(redis: ArqRedis, settings: Settings) -> int:
    return len([k async for k in redis.scan_iter(match=record_prefix(settings.queue_name) + "*")])


async def test_a_live_worker_is_healthy_and_a_killed_one_is_dead_within_two_intervals(
    settings: Settings, redis: ArqRedis, tmp_path: Path
) -> None:
    assert (await _health(settings)).returncode == 1  # nobody serves this queue yet
    worker = start_worker(settings, tmp_path / "worker.log", health_check_interval=INTERVAL)
    try:
        await wait_until(lambda: _has_record(redis, settings), within=30, what="the worker's health record")
        healthy = await _health(settings)
        assert healthy.returncode == 0, healthy.stdout
        report = json.loads(healthy.stdout)
        assert report["ok"] is True
        assert [w["pid"] for w in report["workers"]] == [worker.pid]
        assert "as the code expects" in report["database"]

        worker.send_signal(signal.SIGKILL)
        worker.wait()
        await asyncio.sleep(2 * INTERVAL + 0.2)  # the record's lifetime after its last refresh
        dead = await _health(settings)
    finally:
        stop(worker)
    assert dead.returncode == 1
    assert json.loads(dead.stdout)["workers"] == []


async def _has_record(redis: ArqRedis, settings: Settings) -> bool:
    return await _records(redis, settings) > 0


async def test_a_clean_shutdown_removes_the_record_at_once(
    settings: Settings, redis: ArqRedis, tmp_path: Path
) -> None:
    worker = start_worker(settings, tmp_path / "worker.log", health_check_interval=60)
    try:
        await wait_until(lambda: _has_record(redis, settings), within=30, what="the worker's health record")
    finally:
        assert stop(worker) == 0
    assert await _records(redis, settings) == 0


async def test_a_database_behind_head_is_unhealthy_with_the_reason(
    settings: Settings, empty_database_url: str, redis: ArqRedis, tmp_path: Path
) -> None:
    worker = start_worker(settings, tmp_path / "worker.log", health_check_interval=INTERVAL)
    try:
        await wait_until(lambda: _has_record(redis, settings), within=30, what="the worker's health record")
        behind = make_settings(empty_database_url, queue_name=settings.queue_name)
        result = await _health(behind)
    finally:
        stop(worker)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert len(report["workers"]) == 1
    assert report["database"].startswith("database at revision None, code expects ")
    assert report["database"].endswith("run `make db-migrate`")
