"""`python -m worker status | job | failed | retry`: the queue, one job, failed jobs, one tried again."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from worker import tracing
from worker.cli.inspection import job_report, queue_status
from worker.cli.tables import Cell, Column, Output, short_time, shown
from worker.client import ProvisioningClient
from worker.jobs.errors import DuplicateJob, InvalidPayload
from worker.jobs.stamps import CLOCK
from worker.runtime.failures import failed_job, failed_jobs
from worker.settings import get_settings

COUNTS = ("queued", "deferred", "in_progress", "live_workers")
FAILURE_COLUMNS = (
    Column("failed at"),
    Column("job id"),
    Column("function"),
    Column("try", numeric=True),
    Column("error type"),
    Column("message", wrap=True),
)
JOB_FIELDS = {
    "job_id": "job id",
    "state": "state",
    "function": "function",
    "tries": "tries",
    "success": "success",
}


async def status_command(options: argparse.Namespace) -> int:
    settings = get_settings()
    async with ProvisioningClient.connect(settings) as client:
        data = await queue_status(client.redis, settings)
    if options.json:
        print(json.dumps(data, sort_keys=True, default=str))
        return 0
    show_status(data, Output.stdout(table=options.table))
    return 0


async def job_command(options: argparse.Namespace) -> int:
    settings = get_settings()
    async with ProvisioningClient.connect(settings) as client:
        data = await job_report(client.redis, settings, options.job_id)
    if options.json:
        print(json.dumps(data, sort_keys=True, default=str))
        return 0
    show_job(data, Output.stdout(table=options.table))
    return 0


async def failed_command(options: argparse.Namespace) -> int:
    settings = get_settings()
    async with ProvisioningClient.connect(settings) as client:
        data = await failed_jobs(client.redis, settings.queue_name, limit=options.limit)
    if options.json:
        print(json.dumps(data, sort_keys=True, default=str))
    else:
        show_failures(data, f"failed jobs on {settings.queue_name}", Output.stdout(table=options.table))
    return 0


async def retry_command(options: argparse.Namespace) -> int:
    tracing.configure(tracing.CLI_SERVICE)  # the new job's enqueue span links to the failed one's trace
    settings = get_settings()
    async with ProvisioningClient.connect(settings) as client:
        failure = await failed_job(client.redis, settings.queue_name, options.job_id)
        if failure is None:
            print(f"error: no failed job {options.job_id} is kept (FAILED_JOB_RETENTION)", file=sys.stderr)
            return 2
        if failure.get("password_dropped"):
            print(
                f"error: job {options.job_id} carried a password, which is never kept: "
                "enqueue it again from its source",
                file=sys.stderr,
            )
            return 2
        omitted = failure.get("arguments_omitted")
        if omitted:
            print(
                f"error: job {options.job_id}'s arguments ({omitted['bytes']} bytes, sha256 "
                f"{omitted['sha256'][:16]}…) were too large to keep: enqueue it again from its source",
                file=sys.stderr,
            )
            return 2
        arguments = dict(failure["arguments"])
        arguments.setdefault("stamp_job_id", failure["job_id"])  # the whole stamp: (as_of, original id)
        if options.as_of == "now":
            arguments["as_of"] = CLOCK.now()
            del arguments["stamp_job_id"]  # a new stamp: this job's own id breaks its ties
        try:
            new = await client.enqueue(
                failure["function"], job_id=options.new_job_id, follows=failure.get("trace"), **arguments
            )
        except (InvalidPayload, DuplicateJob) as error:
            print(f"error: cannot retry: {error}", file=sys.stderr)
            return 2
    if options.json:
        data = {"retried": options.job_id, "job_id": new.job_id, "function": failure["function"]}
        print(json.dumps(data, sort_keys=True, default=str))
    else:
        print(f"enqueued {failure['function']} again as job {new.job_id} (was {options.job_id})")
    return 0


def show_status(data: Mapping[str, Any], out: Output) -> None:
    """`status`: the queue's counts, then its newest failures."""
    columns = [Column(name.replace("_", " "), numeric=True) for name in COUNTS]
    out.table(f"queue {data['queue']}", columns, [[str(data[name]) for name in COUNTS]])
    show_failures(data["recent_failures"], "recent failures", out)


def show_failures(failures: Sequence[Mapping[str, Any]], title: str, out: Output) -> None:
    """`failed`: one row per failed job, newest first (security events first)."""
    rows: list[list[Cell]] = [
        [
            short_time(failure["failed_at"]),
            failure["job_id"],
            failure["function"],
            str(failure["try"]),
            failure["error_type"],
            failure["message"],
        ]
        for failure in failures
    ]
    out.table(title, FAILURE_COLUMNS, rows)


def show_job(report: Mapping[str, Any], out: Output) -> None:
    """`job`: one block of what is known of the job; a result one field a line."""
    columns = [Column(label) for key, label in JOB_FIELDS.items() if key in report]
    row: list[Cell] = [shown(report[key]) for key in JOB_FIELDS if key in report]
    if "result" in report:
        columns.append(Column("result", wrap=True))
        row.append(_result_lines(report["result"]))
    if "error" in report:
        columns.append(Column("error", wrap=True))
        row.append(str(report["error"]))
    out.blocks(columns, [row])


def _result_lines(result: Any) -> list[str]:
    """A job's result, one field (or list item) a line."""
    if not isinstance(result, Mapping):
        return [_result_value(result)]
    lines = []
    for key, value in result.items():
        items = value if isinstance(value, list) else [value]
        lines += [f"{key}: {_result_value(item)}" for item in items] or [f"{key}: none"]
    return lines


def _result_value(value: Any) -> str:
    """A value of a result: text as it is, an object as its fields (`index: 17, error: …`), else JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return ", ".join(f"{key}: {_result_value(item)}" for key, item in value.items())
    return json.dumps(value, default=str)
