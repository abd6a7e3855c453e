"""Command line: `python -m worker enqueue FUNCTION --field value … [--wait]`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from arq.jobs import Job
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress

from worker.client import DuplicateJob, ProvisioningClient, connect_redis
from worker.errors import InvalidPayload
from worker.health import check_health
from worker.importing import UnreadableFile, batched, read_users
from worker.payloads import PAYLOADS
from worker.serialization import JobFailed
from worker.settings import get_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m worker", description="Provisioning worker tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    enqueue = commands.add_parser("enqueue", help="enqueue a job (see docs/jobs.md)")
    functions = enqueue.add_subparsers(dest="function", required=True, metavar="FUNCTION")
    for name, model in PAYLOADS.items():
        sub = functions.add_parser(name, help=(model.__doc__ or "").strip().splitlines()[0])
        for field, info in model.model_fields.items():
            sub.add_argument(f"--{field.replace('_', '-')}", dest=field, required=info.is_required())
        if "password_sealed" in model.model_fields:
            sub.add_argument(
                "--ask-password",
                action="store_true",
                help="prompt for a password; it is sent sealed with SEAL_KEYS, never in the clear",
            )
            sub.add_argument(
                "--password-stdin",
                action="store_true",
                help="read the password from standard input (first line); sent sealed",
            )
        sub.add_argument("--job-id", help="job id (default: a random one); reusing a live id is refused")
        sub.add_argument("--wait", action="store_true", help="wait for the job and print its result")
        sub.add_argument("--timeout", type=float, default=60.0, help="seconds to wait with --wait")
    health = commands.add_parser(
        "health", help="exit 0 only if a live worker serves the queue and the database is at head"
    )
    health.add_argument("--json", action="store_true", help="print the findings as JSON")
    bulk = commands.add_parser("import", help="provision the users in a CSV or JSON-lines file, in batches")
    bulk.add_argument("file", type=Path, help="CSV (header: email,role[,password_hash]) or .jsonl")
    bulk.add_argument("--batch-size", type=int, help="users per provision_users job (default BULK_MAX_BATCH)")
    bulk.add_argument(
        "--job-prefix",
        help="job ids become PREFIX-<batch number> (default: random); re-running an import with the same "
        "prefix while its jobs or results live enqueues nothing twice",
    )
    bulk.add_argument("--wait", action="store_true", help="wait for every batch and print the totals")
    bulk.add_argument("--timeout", type=float, default=600.0, help="seconds to wait with --wait")
    return parser


async def _health(options: argparse.Namespace) -> int:
    settings = get_settings()
    redis = await connect_redis(settings)
    try:
        report = await check_health(redis, settings)
    finally:
        await redis.aclose(close_connection_pool=True)
    if options.json:
        print(json.dumps(report.as_dict(), sort_keys=True))
    else:
        live = ", ".join(
            f"{w['id']} (seen {time.time() - float(w['seen']):.1f} s ago)" for w in report.workers
        )
        print(
            f"queue {settings.queue_name}: {len(report.workers)} live worker(s){': ' + live if live else ''}"
        )
        print(f"database: {report.database}")
        print("healthy" if report.ok else "UNHEALTHY")
    return 0 if report.ok else 1


async def _import(options: argparse.Namespace) -> int:
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
    print(json.dumps(summary, sort_keys=True))
    return 1 if summary.get("failed_jobs") else 0


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
            failed.append(f"{job.job_id}: {error or 'no result in time'}")
            continue
        for name in totals:
            totals[name] += int(result[name])
        rejections += [
            {"row": offset + int(r["index"]) + 1, "error": r["error"]} for r in result["rejections"]
        ]
        progress.advance(applying, sum(int(result[name]) for name in totals))
    return {"jobs": len(jobs), "users": total, **totals, "rejections": rejections, "failed_jobs": failed}


async def _enqueue(options: argparse.Namespace) -> int:
    model = PAYLOADS[options.function]
    arguments: dict[str, Any] = {field: getattr(options, field) for field in model.model_fields}
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    options = _parser().parse_args(argv)
    if options.command == "enqueue":
        return asyncio.run(_enqueue(options))
    if options.command == "import":
        return asyncio.run(_import(options))
    if options.command == "health":
        return asyncio.run(_health(options))
    raise AssertionError(f"unhandled command {options.command}")  # argparse rejects others first
