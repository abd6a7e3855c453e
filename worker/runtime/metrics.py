"""Prometheus metrics, served by the worker on METRICS_PORT (off unless set)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from worker.runtime.runs import JobRun

REGISTRY = CollectorRegistry(auto_describe=True)

JOBS_STARTED = Counter(
    "provisioning_jobs_started", "Jobs started, by function", ["function"], registry=REGISTRY
)
JOBS_SUCCEEDED = Counter(
    "provisioning_jobs_succeeded", "Jobs that succeeded", ["function"], registry=REGISTRY
)
JOBS_FAILED = Counter(
    "provisioning_jobs_failed", "Jobs that failed for good", ["function", "error_type"], registry=REGISTRY
)
JOBS_RETRIED = Counter(
    "provisioning_jobs_retried", "Job runs ending in a retry", ["function", "error_type"], registry=REGISTRY
)
DEADLOCK_RETRIES = Counter(
    "provisioning_deadlock_retries",
    "Job runs retried because PostgreSQL detected a deadlock (locks are taken in key order: expect 0)",
    ["function"],
    registry=REGISTRY,
)
SECURITY_FAILURES = Counter(
    "provisioning_security_failures",
    "Deactivations and deletions that failed for good: a person may keep access",
    ["function"],
    registry=REGISTRY,
)
JOB_DURATION = Histogram(
    "provisioning_job_duration_seconds",
    "Time in the task, by function",
    ["function"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
GROUP_SIZE = Histogram(
    "provisioning_group_size",
    "Single-user jobs written by one group-commit statement",
    registry=REGISTRY,
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
JOBS_IN_PROGRESS = Gauge("provisioning_jobs_in_progress", "Jobs running in this worker", registry=REGISTRY)
QUEUE_DEPTH = Gauge(
    "provisioning_queue_depth", "Jobs waiting in the queue (incl. deferred)", registry=REGISTRY
)
REDIS_UP = Gauge(
    "provisioning_redis_up", "1 while this worker reaches Redis, 0 during an outage", registry=REGISTRY
)
DB_POOL_CHECKED_OUT = Gauge(
    "provisioning_db_pool_checked_out", "Database connections in use by this worker", registry=REGISTRY
)


def serve(port: int) -> Any:
    """Serve /metrics on `port`; returns the server (call .shutdown() to stop)."""
    server, _thread = start_http_server(port, registry=REGISTRY)
    return server


def record_job(run: JobRun) -> None:
    """Count one finished task run by how it ended."""
    error_type = run.error_type or ""
    JOB_DURATION.labels(run.function).observe(run.seconds)
    if run.ending == "succeeded":
        JOBS_SUCCEEDED.labels(run.function).inc()
    elif run.ending == "retried":
        JOBS_RETRIED.labels(run.function, error_type).inc()
    elif run.ending == "failed":
        JOBS_FAILED.labels(run.function, error_type).inc()
