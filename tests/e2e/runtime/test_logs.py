"""Structured logs of a real worker process: one JSON line per job event, no job arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from arq.connections import ArqRedis

from tests.support.ids import new_id
from tests.support.processes import start_worker, stop
from worker.client import ProvisioningClient
from worker.jobs.errors import JobFailed
from worker.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("committing_sessions")]


async def test_job_events_are_json_lines_without_arguments(
    settings: Settings, redis: ArqRedis, tmp_path: Path
) -> None:
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    marker = "arg-value-7c1e"
    good = await client.provision_user(email=f"{marker}@example.com", role="member", job_id=new_id())
    # A deactivation refused for a bad clock: a failure, and a security event.
    missing = await client.deactivate_user(
        email=f"{marker}-ghost@example.com", job_id=new_id(), as_of="2099-01-01T00:00:00Z"
    )
    bad = await redis.enqueue_job(
        "provision_user",
        email=f"{marker}-no-at-sign",
        role="admin",
        _job_id=new_id(),
        _queue_name=settings.queue_name,
    )
    assert bad is not None
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log, log_format="json")
    try:
        assert (await good.result(timeout=30))["status"] == "created"
        for failing in (missing, bad):
            with pytest.raises(JobFailed):
                await failing.result(timeout=30)
    finally:
        assert stop(worker) == 0

    lines = [line for line in log.read_text().splitlines() if line.strip()]
    # ARQ prints two banner lines before our startup hook configures logging; from then on, JSON only.
    first_json = next(i for i, line in enumerate(lines) if line.startswith("{"))
    assert first_json <= 2
    records = [json.loads(line) for line in lines[first_json:]]
    events = {r["job_id"]: r for r in records if r.get("event") == "job"}
    assert events[good.job_id]["outcome"] == "succeeded"
    assert events[missing.job_id]["outcome"] == "failed"
    assert events[missing.job_id]["error_type"] == "StampRefused"
    assert events[bad.job_id]["error_type"] == "InvalidPayload"
    for event in events.values():
        assert {"ts", "level", "logger", "job_id", "function", "try", "outcome", "duration_ms"} <= set(event)
        assert event["function"] in {"provision_user", "deactivate_user"}
        assert event["try"] == 1
    security = [r for r in records if r.get("security") is True]
    assert [(r["level"], r["job_id"], r["function"], r["error_type"]) for r in security] == [
        ("error", missing.job_id, "deactivate_user", "StampRefused")
    ]
    assert marker not in log.read_text()  # no payload value anywhere in the log
