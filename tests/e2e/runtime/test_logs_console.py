"""`LOG_FORMAT=console`: one readable line per job for developers, its fields as key=value."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest
from arq.connections import ArqRedis

from tests.support.cli import queue_job_id, settings_env
from worker.client import ProvisioningClient
from worker.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("committing_sessions")]


async def test_a_burst_worker_logs_each_job_on_one_console_line_with_its_fields(
    settings: Settings, redis: ArqRedis, tmp_path: Path
) -> None:
    job_id = queue_job_id(settings)
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    await client.provision_user(email="console@example.com", role="member", job_id=job_id)
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "arq", "worker.main.WorkerSettings", "--burst"),
        cwd=tmp_path,
        env=settings_env(settings, log_format="console"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    lines = [line for line in (out + err).decode().splitlines() if job_id in line]
    assert len(lines) == 1, lines
    line = re.fullmatch(r"\d\d:\d\d:\d\d INFO +worker\.jobs: job succeeded provision_user (.*)", lines[0])
    assert line is not None, lines[0]
    fields = dict(field.split("=", 1) for field in line.group(1).split(" "))
    assert fields["job_id"] == job_id
    assert (fields["function"], fields["try"], fields["outcome"]) == ("provision_user", "1", "succeeded")
    assert float(fields["duration_ms"]) > 0
    assert "event" not in fields
    assert not (out + err).decode().lstrip().startswith("{")  # no JSON lines in console mode
