"""Per-job hooks that cannot take a job, or the worker, down with them."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger(__name__)

JobHook = Callable[[dict[str, Any]], Awaitable[object]]


def contained(hook: JobHook) -> JobHook:
    """Wrap a per-job hook so that its exceptions are logged and go no further.

    ARQ runs `on_job_end` before it records a job's outcome: an exception there would leave the
    job marked in progress, to be run again after the in-progress key expires.
    """

    @functools.wraps(hook)
    async def run_contained(ctx: dict[str, Any]) -> None:
        try:
            await hook(ctx)
        except Exception:
            logger.exception(
                "hook %s failed for job %s (try %s); the job is unaffected",
                getattr(hook, "__qualname__", hook),
                ctx.get("job_id"),
                ctx.get("job_try"),
            )

    return run_contained
