"""A `provision_users` batch whose entries carry their own `as_of`: each is checked on its own."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from arq.connections import ArqRedis

from tests.support.cli import run_cli, settings_env
from worker.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("committing_sessions")]


async def _burst(settings: Settings, cwd: Path) -> None:
    """`arq worker.main.WorkerSettings --burst`: run what is queued, then exit."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "arq", "worker.main.WorkerSettings", "--burst"),
        cwd=cwd,
        env=settings_env(settings, log_format="off"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert await asyncio.wait_for(process.wait(), timeout=60) == 0


async def test_entries_stamped_outside_the_window_are_rejected_in_row_order_and_the_rest_applied(
    settings: Settings, redis: ArqRedis, tmp_path: Path
) -> None:
    people = tmp_path / "people.jsonl"
    entries = [
        {"email": "future@example.com", "role": "member", "as_of": "2099-01-01T00:00:00Z"},
        {"email": "not-an-email", "role": "member"},
        {"email": "now@example.com", "role": "member"},
        {"email": "ancient@example.com", "role": "member", "as_of": "2000-01-01T00:00:00Z"},
    ]
    people.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    prefix = f"{settings.queue_name}:import"
    enqueued = await run_cli(settings, "import", str(people), "--job-prefix", prefix, cwd=tmp_path)
    assert enqueued.returncode == 0, enqueued.stderr
    await _burst(settings, tmp_path)
    report = json.loads((await run_cli(settings, "job", f"{prefix}-0", "--json", cwd=tmp_path)).stdout)
    assert report["success"] is True, report
    result = report["result"]
    assert (result["created"], result["rejected"]) == (1, 3)
    assert [rejection["index"] for rejection in result["rejections"]] == [0, 1, 3]
    future, invalid, ancient = (rejection["error"] for rejection in result["rejections"])
    assert future.startswith("as_of is ")
    assert "more than MAX_CLOCK_SKEW" in future
    assert future.endswith("fix the enqueuer's clock (NTP), then send the command again")
    assert invalid.startswith("email: value is not a valid email address")
    assert "older than TOMBSTONE_RETENTION" in ancient
    assert ancient.endswith("send it again with a current as_of")
