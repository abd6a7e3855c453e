"""`python -m worker import`: a file enqueued in batches, and a bad file refused before anything is sent."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.ids import new_id
from tests.support.processes import ROOT, run_module, worker_env
from tests.support.queries import provisioned_users
from tests.support.worker_runner import run_burst
from worker.settings import Settings


async def test_the_cli_imports_a_file_in_batches_and_reports_rows(
    redis: ArqRedis, settings: Settings, engine: AsyncEngine, tmp_path: Path
) -> None:
    users_file = tmp_path / "people.csv"
    lines = ["email,role"] + [f"p{i}@example.com,member" for i in range(25)] + ["broken,member"]
    users_file.write_text("\n".join(lines) + "\n")
    env = worker_env(settings)
    command = ["worker", "import", str(users_file), "--json", "--batch-size", "10", "--job-prefix"]
    enqueued = run_module(*command, new_id("import"), env=env)  # the real CLI, briefly
    assert enqueued.returncode == 0, enqueued.stderr
    assert json.loads(enqueued.stdout) == {"jobs": 3, "users": 26}
    await run_burst(settings)
    assert len(await provisioned_users(engine)) == 25

    waited = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-m", *command, new_id("import"), "--wait"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for _ in range(300):  # the CLI starts slowly on a busy machine: wait until it has enqueued
        if await redis.zcard(settings.queue_name) == 3:
            break
        await asyncio.sleep(0.1)
    await run_burst(settings)
    out, err = waited.communicate(timeout=60)
    summary = json.loads(out)
    assert (summary["unchanged"], summary["rejected"]) == (25, 1)
    assert summary["rejections"] == [{"row": 26, "error": summary["rejections"][0]["error"]}]
    assert "email: value is not a valid email address" in summary["rejections"][0]["error"]
    assert "applying" in err  # the progress bar went to stderr


def test_the_cli_refuses_a_bad_file_before_enqueueing(settings: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("name\nx\n")
    done = run_module("worker", "import", str(bad), env=worker_env(settings))
    assert done.returncode == 2
    assert "the CSV header must name email and role" in done.stderr
