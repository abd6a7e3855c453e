"""`python -m worker status | job | failed | retry`: the queue, one job, failed jobs, one tried again."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from worker.cli.inspection import job_report, queue_status
from worker.client import ProvisioningClient
from worker.jobs.errors import DuplicateJob, InvalidPayload
from worker.jobs.stamps import CLOCK
from worker.runtime.failures import failed_job, failed_jobs
from worker.settings import get_settings


async def status_command(options: argparse.Namespace) -> int:
    settings = get_settings()
    async with ProvisioningClient.connect(settings) as client:
        data = await queue_status(client.redis, settings)
    if options.json:
        print(json.dumps(data, sort_keys=True, default=str))
        return 0
    table = Table(title=f"queue {data['queue']}")
    for name in ("queued", "deferred", "in_progress", "live_workers"):
        table.add_column(name.replace("_", " "), justify="right")
    table.add_row(*(str(data[n]) for n in ("queued", "deferred", "in_progress", "live_workers")))
    console = Console()
    console.print(table)
    console.print(_failures_table(data["recent_failures"], "recent failures"))
    return 0


async def job_command(options: argparse.Namespace) -> int:
    settings = get_settings()
    async with ProvisioningClient.connect(settings) as client:
        data = await job_report(client.redis, settings, options.job_id)
    if options.json:
        print(json.dumps(data, sort_keys=True, default=str))
        return 0
    console = Console()
    for key, value in data.items():
        console.print(f"[bold]{key}[/bold]: {value}")
    return 0


async def failed_command(options: argparse.Namespace) -> int:
    settings = get_settings()
    async with ProvisioningClient.connect(settings) as client:
        data = await failed_jobs(client.redis, settings.queue_name, limit=options.limit)
    if options.json:
        print(json.dumps(data, sort_keys=True, default=str))
    else:
        Console().print(_failures_table(data, f"failed jobs on {settings.queue_name}"))
    return 0


async def retry_command(options: argparse.Namespace) -> int:
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
            new = await client.enqueue(failure["function"], job_id=options.new_job_id, **arguments)
        except (InvalidPayload, DuplicateJob) as error:
            print(f"error: cannot retry: {error}", file=sys.stderr)
            return 2
    if options.json:
        data = {"retried": options.job_id, "job_id": new.job_id, "function": failure["function"]}
        print(json.dumps(data, sort_keys=True, default=str))
    else:
        print(f"enqueued {failure['function']} again as job {new.job_id} (was {options.job_id})")
    return 0


def _failures_table(failures: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for column in ("failed at", "job id", "function", "try", "error"):
        table.add_column(column, no_wrap=column != "error")
    for failure in failures:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(failure["failed_at"])))
        table.add_row(
            when,
            failure["job_id"],
            failure["function"],
            str(failure["try"]),
            f"{failure['error_type']}: {failure['message']}",
        )
    return table
