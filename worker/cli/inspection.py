"""What `python -m worker status | job | failed | retry` read from Redis."""

from __future__ import annotations

import time
from typing import Any

from arq.connections import ArqRedis
from arq.jobs import Job

from worker.jobs.serialization import deserialize
from worker.runtime.failures import failed_job, failed_jobs
from worker.runtime.health import record_prefix
from worker.settings import Settings


async def queue_status(redis: ArqRedis, settings: Settings) -> dict[str, Any]:
    """Queue depth, deferred and in-progress jobs, live workers, recent failures."""
    queue = settings.queue_name
    now_ms = time.time() * 1000
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(queue)
        pipe.zcount(queue, now_ms, "+inf")
        pipe.zrangebyscore(queue, "-inf", now_ms)
        total, deferred, ready = await pipe.execute()
    in_progress = 0
    if ready:
        in_progress = int(await redis.exists(*[f"arq:in-progress:{job_id.decode()}" for job_id in ready]))
    workers = [key async for key in redis.scan_iter(match=record_prefix(queue) + "*", count=1000)]
    return {
        "queue": queue,
        "queued": int(total) - int(deferred) - in_progress,
        "deferred": int(deferred),
        "in_progress": in_progress,
        "live_workers": len(workers),
        "recent_failures": await failed_jobs(redis, queue, limit=5),
    }


async def job_report(redis: ArqRedis, settings: Settings, job_id: str) -> dict[str, Any]:
    """State, tries and result or error of one job."""
    job = Job(job_id, redis, _queue_name=settings.queue_name, _deserializer=deserialize)
    report: dict[str, Any] = {"job_id": job_id, "state": (await job.status()).value}
    info = await job.result_info()
    if info is not None:
        report.update(function=info.function, tries=info.job_try, success=info.success)
        if info.success:
            report["result"] = info.result
        else:
            report["error"] = str(info.result)
    failure = await failed_job(redis, settings.queue_name, job_id)
    if failure is not None:
        report.setdefault("function", failure["function"])
        report.setdefault("tries", failure["try"])
        report.setdefault("success", False)
        report.setdefault("error", f"{failure['error_type']}: {failure['message']}")
        if report["state"] == "not_found":
            report["state"] = "failed"
    return report
