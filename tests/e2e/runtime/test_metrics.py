"""Prometheus metrics scraped over HTTP from a real worker process after a burst of jobs."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import pytest
from arq.connections import ArqRedis
from prometheus_client.parser import text_string_to_metric_families

from tests.support.ids import new_id
from tests.support.processes import start_worker, stop
from tests.support.tcp_proxy import free_port
from worker.client import ProvisioningClient
from worker.jobs.errors import JobFailed
from worker.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("committing_sessions")]


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_counters_match_what_happened(settings: Settings, redis: ArqRedis, tmp_path: Path) -> None:
    port = free_port()
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    good = [
        await client.provision_user(email=f"m{i}@example.com", role="member", job_id=new_id())
        for i in range(5)
    ]
    bad = [
        await redis.enqueue_job(
            "provision_user", email="nope", role="admin", _job_id=new_id(), _queue_name=settings.queue_name
        )
        for _ in range(3)
    ]
    missing = await client.delete_user(
        email="ghost@example.com", job_id=new_id(), as_of="2099-01-01T00:00:00Z"
    )
    worker = start_worker(settings, tmp_path / "worker.log", metrics_port=port, health_check_interval=1)
    try:
        for job in good:
            await job.result(timeout=30)
        for failing in [*bad, missing]:
            assert failing is not None
            with pytest.raises(JobFailed):
                await failing.result(timeout=30)
        await asyncio.sleep(1.5)  # one health beat refreshes the queue-depth and pool gauges
        metrics = await asyncio.to_thread(_scrape, port)
    finally:
        stop(worker)

    def value(name: str, **labels: str) -> float:
        return metrics.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("provisioning_jobs_started_total", function="provision_user") == 8
    assert value("provisioning_jobs_started_total", function="delete_user") == 1
    assert value("provisioning_jobs_succeeded_total", function="provision_user") == 5
    assert (
        value("provisioning_jobs_failed_total", function="provision_user", error_type="InvalidPayload") == 3
    )
    assert value("provisioning_jobs_failed_total", function="delete_user", error_type="StampRefused") == 1
    assert value("provisioning_security_failures_total", function="delete_user") == 1
    assert value("provisioning_security_failures_total", function="provision_user") == 0
    assert value("provisioning_job_duration_seconds_count", function="provision_user") == 8
    assert value("provisioning_jobs_in_progress") == 0
    # The 9 jobs are gone from the queue; a maintenance cron job may be queued or running at the beat.
    assert value("provisioning_queue_depth") <= 1
    assert value("provisioning_db_pool_checked_out") == 0
