"""`python -m worker enqueue | import | new-seal-key`: sending jobs, one or a file's worth in batches."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import uuid
from collections.abc import Mapping
from typing import Any

from arq.jobs import Job
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress

from worker import tracing
from worker.cli.importing import UnreadableFile, batched, read_users
from worker.cli.tables import Column, Output
from worker.client import ProvisioningClient
from worker.jobs.errors import DuplicateJob, InvalidPayload, JobFailed
from worker.jobs.payloads import PAYLOADS
from worker.jobs.sealing import new_seal_key
from worker.settings import get_settings

IMPORT_COUNTS = ("jobs", "users", "created", "updated", "unchanged", "rejected", "already_enqueued")


async def enqueue_command(options: argparse.Namespace) -> int:
    tracing.configure(tracing.CLI_SERVICE)  # the enqueue's span, when OTEL_* turns tracing on
    model = PAYLOADS[options.function]
    arguments: dict[str, Any] = {field: getattr(options, field) for field in model.model_fields}
    if arguments.get("as_of") is not None and arguments["as_of"].isdigit():
        arguments["as_of"] = int(arguments["as_of"])  # microseconds; anything else is RFC 3339
    password: str | None = None
    if getattr(options, "ask_password", False):
        password = getpass.getpass("Password: ")
    elif getattr(options, "password_stdin", False):
        password = sys.stdin.readline().rstrip("\r\n")
    async with ProvisioningClient.connect() as client:
        try:
            if password is not None:
                if arguments.get("password_hash") or arguments.get("password_sealed"):
                    raise InvalidPayload(
                        "give one password: --password-hash, --ask-password or --password-stdin"
                    )
                arguments["password_sealed"] = client.seal(password)
            job = await client.enqueue(options.function, job_id=options.job_id, **arguments)
        except (InvalidPayload, DuplicateJob) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"enqueued {options.function} as job {job.job_id} on {client.queue_name}")
        if not options.wait:
            return 0
        return await _wait(job, options.timeout)


async def _wait(job: Job, wait_seconds: float) -> int:
    try:
        result = await job.result(timeout=wait_seconds, poll_delay=0.1)
    except TimeoutError:
        print(f"error: no result after {wait_seconds:g}s: is a worker serving this queue?", file=sys.stderr)
        return 1
    except JobFailed as failure:
        print(f"failed: {failure}", file=sys.stderr)
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0


async def import_command(options: argparse.Namespace) -> int:
    tracing.configure(tracing.CLI_SERVICE)
    settings = get_settings()
    size = options.batch_size or settings.bulk_max_batch
    if not 0 < size <= settings.bulk_max_batch:
        print(
            f"error: --batch-size must be between 1 and BULK_MAX_BATCH ({settings.bulk_max_batch})",
            file=sys.stderr,
        )
        return 2
    try:
        total = sum(1 for _ in read_users(options.file))  # reads the whole file before enqueueing anything
    except (OSError, UnreadableFile) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    console = Console(stderr=True)
    jobs: list[tuple[int, Job]] = []
    async with ProvisioningClient.connect(settings) as client:
        with Progress(*Progress.get_default_columns(), MofNCompleteColumn(), console=console) as progress:
            sending = progress.add_task("enqueueing", total=total)
            prefix = options.job_prefix or uuid.uuid4().hex
            skipped = 0
            for number, batch in enumerate(batched(read_users(options.file), size)):
                try:
                    jobs.append(
                        (number * size, await client.provision_users(batch, job_id=f"{prefix}-{number}"))
                    )
                except DuplicateJob:
                    skipped += 1  # this batch was enqueued by an earlier run of the same import
                progress.advance(sending, len(batch))
            summary: dict[str, object] = {"jobs": len(jobs), "users": total}
            if options.wait:
                summary = await _wait_for_batches(jobs, progress, total, options.timeout)
            if skipped:
                summary["already_enqueued"] = skipped
    if options.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        show_import(f"import of {options.file}", summary, Output.stdout(table=options.table))
    return 1 if summary.get("failed_jobs") else 0


def show_import(title: str, summary: Mapping[str, Any], out: Output) -> None:
    """`import`'s summary: the counts, then any rejected rows and failed batches."""
    counts = [name for name in IMPORT_COUNTS if name in summary]
    columns = [Column(name.replace("_", " "), numeric=True) for name in counts]
    out.table(title, columns, [[str(summary[name]) for name in counts]])
    if rejections := summary.get("rejections"):
        rows = [[str(rejection["row"]), rejection["error"]] for rejection in rejections]
        out.table("rejected rows", (Column("row", numeric=True), Column("error", wrap=True)), rows)
    if failed := summary.get("failed_jobs"):
        out.table("failed batches", (Column("job: error", wrap=True),), [[failure] for failure in failed])


async def _wait_for_batches(
    jobs: list[tuple[int, Job]], progress: Progress, total: int, wait_seconds: float
) -> dict[str, object]:
    applying = progress.add_task("applying", total=total)
    totals = {"created": 0, "updated": 0, "unchanged": 0, "rejected": 0}
    rejections: list[dict[str, object]] = []
    failed: list[str] = []
    for offset, job in jobs:
        try:
            result = await job.result(timeout=wait_seconds, poll_delay=0.1)
        except (TimeoutError, JobFailed) as error:
            failed.append(f"{job.job_id}: {str(error) or 'no result in time'}")
            continue
        for name in totals:
            totals[name] += int(result[name])
        rejections += [
            {"row": offset + int(r["index"]) + 1, "error": r["error"]} for r in result["rejections"]
        ]
        progress.advance(applying, sum(int(result[name]) for name in totals))
    return {"jobs": len(jobs), "users": total, **totals, "rejections": rejections, "failed_jobs": failed}


async def new_seal_key_command(options: argparse.Namespace) -> int:
    print(new_seal_key())
    return 0
