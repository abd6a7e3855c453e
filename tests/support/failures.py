"""Failure records made the way the worker makes them, for the tests that read, list or retry them."""

from __future__ import annotations

from typing import Any

from arq.connections import ArqRedis

from worker.runtime.failures import record_failure


async def seed_failure(
    redis: ArqRedis,
    queue: str,
    job_id: str,
    function: str,
    arguments: dict[str, Any],
    *,
    job_try: int = 1,
    error_type: str = "DatabaseUnavailable",
    message: str = "cannot reach PostgreSQL",
    retention: int = 600,
    security: bool = False,
) -> None:
    """Record `job_id` as failed on `queue`, as the worker does (by default: a lost database)."""
    await record_failure(
        redis,
        queue,
        job_id=job_id,
        function=function,
        job_try=job_try,
        error_type=error_type,
        message=message,
        arguments=arguments,
        retention=retention,
        security=security,
    )
