"""One run of a task: payload, deadline, retry decision, failure record, metrics and log line.

Every task goes through `run_job`, which validates the payload, gives the task's body its own
deadline, turns a transient failure into ARQ's `Retry` (or `GaveUp` on the last try), keeps a
permanent failure for `python -m worker failed`, and reports the run's `JobRun` to the metrics
and the job's one log line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from arq.worker import Retry
from sqlalchemy.exc import DBAPIError

from worker import tracing
from worker.jobs.errors import DatabaseError, GaveUp, first_line
from worker.jobs.payloads import PayloadT, parse_payload
from worker.jobs.serialization import incoming_trace
from worker.jobs.stamps import Stamp, check_stamp, now_micros
from worker.retrying import backoff_delay
from worker.runtime import metrics
from worker.runtime.context import JobContext
from worker.runtime.failures import record_failure
from worker.runtime.logs import log_job_event
from worker.runtime.retries import is_deadlock, is_transient
from worker.runtime.runs import JobRun
from worker.services.outcome import BatchOutcome, UserOutcome

logger = logging.getLogger(__name__)

JobResult = dict[str, object]
# Our own deadline, inside ARQ's job_timeout: ARQ fails a timed-out job for good, we retry it.
DEADLINE_SHARE = 0.8
Outcome = UserOutcome | BatchOutcome
Runner = Callable[[JobContext, str, PayloadT], Awaitable[Outcome]]
# Failing to deactivate or delete leaves a person with access they should not have.
SECURITY_FUNCTIONS = frozenset({"deactivate_user", "delete_user"})


def takes_access_away(function: str, kwargs: Mapping[str, Any]) -> bool:
    """True for a command whose failure leaves someone access they should not have: a deactivation,
    a delete, or an `update_user` that sets `active` to false."""
    return function in SECURITY_FUNCTIONS or (function == "update_user" and kwargs.get("active") is False)


async def run_job(
    ctx: JobContext,
    function: str,
    model: type[PayloadT],
    runner: Runner[PayloadT],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
) -> JobResult:
    """Run one task's body on its validated payload, and account for how it ended.

    With tracing on, each try is a consumer span, the child of the span that enqueued the job
    (the envelope's trace context), or a root span for a job that carries none.
    """
    run = JobRun(function, ctx.get("job_id"), ctx.get("job_try"))
    tracer = tracing.tracer()
    if tracer is None:
        return await _run(ctx, run, model, runner, args, kwargs)
    with tracing.span(
        tracer,
        f"process {function}",
        kind="consumer",
        parent=tracing.extract(incoming_trace()),
        attributes=_span_attributes(ctx, function),
        fail_on_exception=False,
    ) as span:
        try:
            return await _run(ctx, run, model, runner, args, kwargs)
        finally:
            span.set_attribute("job.outcome", run.ending)
            if run.error_type is not None:
                tracing.mark_failed(span, run.error_type)


def _span_attributes(ctx: JobContext, function: str) -> dict[str, str | int | float]:
    """What a try's span says of it: job id, function, try, and how long since the job was enqueued.

    No more: each attribute costs the worker time to record and export (docs/jobs.md, "Tracing").
    """
    attributes: dict[str, str | int | float] = {
        "messaging.message.id": str(ctx.get("job_id")),
        "job.function": function,
        "job.try": int(ctx.get("job_try", 1)),
    }
    if "enqueue_time" in ctx:
        queued = time.time() - ctx["enqueue_time"].timestamp()
        attributes["job.queued_ms"] = round(queued * 1000, 1)
    return attributes


async def _run(
    ctx: JobContext,
    run: JobRun,
    model: type[PayloadT],
    runner: Runner[PayloadT],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
) -> JobResult:
    function = run.function
    metrics.JOBS_STARTED.labels(function).inc()
    metrics.JOBS_IN_PROGRESS.inc()
    try:
        result = await _attempt(ctx, function, runner, parse_payload(model, function, args, kwargs))
    except Retry as retry:
        run.end("retried", retry.__cause__)
        raise
    except asyncio.CancelledError:
        run.end("cancelled")
        raise
    except Exception as error:
        run.end("failed", error)
        security = takes_access_away(function, kwargs)
        if security:
            _report_security_event(ctx, function, error)
        await _keep_failure(ctx, function, error, kwargs, security=security)
        raise
    else:
        run.end("succeeded")
        return result
    finally:
        run.seconds = time.perf_counter() - run.started
        metrics.JOBS_IN_PROGRESS.dec()
        metrics.record_job(run)
        log_job_event(run)


async def _attempt(ctx: JobContext, function: str, runner: Runner[PayloadT], command: PayloadT) -> JobResult:
    settings = ctx["settings"]
    try:
        async with asyncio.timeout(settings.job_timeout * DEADLINE_SHARE):
            outcome = await runner(ctx, function, command)
    except Exception as error:
        if not is_transient(error):
            if isinstance(error, DBAPIError):
                raise DatabaseError(error) from None
            raise
        job_try = ctx.get("job_try", 1)
        reason = f"{type(error).__name__}: {first_line(error)}"
        if job_try >= settings.max_tries:
            raise GaveUp(function=function, tries=job_try, last_error=reason) from None
        delay = backoff_delay(job_try, base=settings.retry_base_delay, cap=settings.retry_max_delay)
        deadlock = is_deadlock(error)
        if deadlock:
            metrics.DEADLOCK_RETRIES.labels(function).inc()
        logger.warning(
            "job %s %s try %d hit a transient error (%s); retrying in %.2fs",
            ctx.get("job_id"),
            function,
            job_try,
            reason,
            delay,
            extra={"event": {"event": "retry", "job_id": ctx.get("job_id"), "deadlock": deadlock}},
        )
        raise Retry(defer=delay) from error
    return outcome.as_result()


def _report_security_event(ctx: JobContext, function: str, error: Exception) -> None:
    """A deactivation or deletion failed for good: someone may keep access they should have lost."""
    metrics.SECURITY_FAILURES.labels(function).inc()
    logger.error(
        "SECURITY: %s failed for good (%s): the user may still have access; see `python -m worker failed`",
        function,
        type(error).__name__,
        extra={
            "event": {
                "event": "security",
                "security": True,
                "job_id": ctx.get("job_id"),
                "function": function,
                "try": ctx.get("job_try"),
                "error_type": type(error).__name__,
            }
        },
    )


async def _keep_failure(
    ctx: JobContext, function: str, error: Exception, kwargs: Mapping[str, Any], *, security: bool
) -> None:
    """Record a failed job for `python -m worker failed` / `retry`; never fails the job twice.

    The record keeps the job's whole stamp (its `as_of`, or its enqueue time, and its job id), so
    that `retry` sends the command at its original position among the user's commands.
    """
    redis, settings = ctx.get("redis"), ctx.get("settings")
    if redis is None or settings is None:
        return
    arguments = dict(kwargs)
    if "as_of" not in arguments and "enqueue_time" in ctx:
        arguments["as_of"] = enqueue_micros(ctx)
    if "stamp_job_id" not in arguments and ctx.get("job_id") is not None:
        arguments["stamp_job_id"] = str(ctx["job_id"])
    # For `retry`'s link to the old trace: this try's span, or the trace the envelope carried.
    trace = tracing.inject() or incoming_trace()
    try:
        await record_failure(
            redis,
            settings.queue_name,
            job_id=str(ctx.get("job_id")),
            function=function,
            job_try=int(ctx.get("job_try", 1)),
            error_type=type(error).__name__,
            message=str(error),
            arguments=arguments,
            retention=settings.failed_job_retention,
            security=security,
            trace=trace,
        )
    except Exception:
        logger.exception("could not record the failure of job %s", ctx.get("job_id"))


def job_stamp(ctx: JobContext, function: str, as_of: int | None, stamp_job_id: str | None = None) -> Stamp:
    """The job's stamp: its `as_of`, else its enqueue time, and the job id it carries (a retry's
    original one), else its own; refused outside the accepted window.

    This check, by the worker's clock, refuses early; the merge checks the window again under the
    person's lock by the database's clock, which is the one that counts.
    """
    if as_of is None:
        as_of = enqueue_micros(ctx)
    check_window(ctx, as_of, function, now=now_micros())
    return Stamp(as_of, stamp_job_id or str(ctx["job_id"]))


def check_window(ctx: JobContext, as_of: int, function: str, *, now: int) -> None:
    """`StampRefused` unless `as_of` lies within MAX_CLOCK_SKEW ahead and TOMBSTONE_RETENTION back."""
    settings = ctx["settings"]
    check_stamp(
        as_of,
        now=now,
        max_skew=settings.max_clock_skew,
        retention=settings.tombstone_retention,
        function=function,
    )


def enqueue_micros(ctx: JobContext) -> int:
    """The job's ARQ enqueue time (`et`, milliseconds) in microseconds."""
    return round(ctx["enqueue_time"].timestamp() * 1000) * 1000
