"""Command line: `python -m worker enqueue FUNCTION --field value … [--wait]`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import time
import types
import typing
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from arq.jobs import Job
from pydantic_core import PydanticCustomError
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress
from rich.table import Table

from worker.cli import scim_server
from worker.cli.importing import UnreadableFile, batched, read_users
from worker.cli.inspection import job_report, queue_status
from worker.cli.scim_health import check_scim, default_url
from worker.client import ProvisioningClient, connect_redis
from worker.db.session import create_engine, create_session_factory
from worker.jobs.emails import email_key
from worker.jobs.errors import DuplicateJob, InvalidPayload, JobFailed
from worker.jobs.payloads import PAYLOADS
from worker.jobs.stamps import CLOCK
from worker.passwords.sealing import new_seal_key
from worker.repositories.audit import change_record
from worker.runtime.failures import erase_failures, failed_job, failed_jobs
from worker.runtime.health import check_health
from worker.services import maintenance
from worker.services.erasure import ErasureKeys
from worker.services.unit_of_work import SqlAlchemyUnitOfWork, open_unit_of_work
from worker.settings import Settings, get_settings

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
"""A subcommand: runs with the parsed options, returns the exit status."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m worker", description="Provisioning worker tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    enqueue = commands.add_parser("enqueue", help="enqueue a job (see docs/jobs.md)")
    enqueue.set_defaults(handler=_enqueue)
    functions = enqueue.add_subparsers(dest="function", required=True, metavar="FUNCTION")
    for name, model in PAYLOADS.items():
        sub = functions.add_parser(name, help=(model.__doc__ or "").strip().splitlines()[0])
        for field, info in model.model_fields.items():
            option, required = f"--{field.replace('_', '-')}", info.is_required()
            if _is_bool(info.annotation):
                sub.add_argument(option, dest=field, required=required, type=_boolean, metavar="true|false")
            else:
                sub.add_argument(option, dest=field, required=required)
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
    health.add_argument(
        "--scim",
        nargs="?",
        const="",
        metavar="URL",
        help="also check the SCIM service: GET URL/healthz (default http://SCIM_HOST:SCIM_PORT)",
    )
    health.add_argument(
        "--scim-only", action="store_true", help="check only the SCIM service (its container's health check)"
    )
    health.set_defaults(handler=_health)
    scim = commands.add_parser(
        "scim", help="serve SCIM 2.0 on SCIM_HOST:SCIM_PORT under /scim/v2 (README, SCIM); needs SCIM_TOKENS"
    )
    scim.set_defaults(handler=scim_server.command)
    status = commands.add_parser(
        "status", help="queue depth, deferred and running jobs, live workers, recent failures"
    )
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)
    job = commands.add_parser("job", help="one job's state, tries, and result or error")
    job.add_argument("job_id")
    job.add_argument("--json", action="store_true")
    job.set_defaults(handler=_job)
    failed = commands.add_parser(
        "failed", help="failed jobs, newest first (kept FAILED_JOB_RETENTION seconds)"
    )
    failed.add_argument("--limit", type=int, default=50)
    failed.add_argument("--json", action="store_true")
    failed.set_defaults(handler=_failed)
    retry = commands.add_parser(
        "retry", help="enqueue a failed job again: same arguments and stamp (as_of), new id"
    )
    retry.add_argument("job_id")
    retry.add_argument("--new-job-id", help="id for the new job (default: a random one)")
    retry.add_argument(
        "--as-of",
        choices=["kept", "now"],
        default="kept",
        help="kept: the job keeps its place among the user's commands (newer ones still win); "
        "now: make it the newest command for its user",
    )
    retry.add_argument("--json", action="store_true")
    retry.set_defaults(handler=_retry)
    history = commands.add_parser("history", help="the audit trail of one email, oldest command first")
    history.add_argument("email")
    history.add_argument("--limit", type=int, default=1000)
    history.add_argument("--json", action="store_true")
    history.set_defaults(handler=_history)
    erase = commands.add_parser(
        "erase",
        help="remove an email from tombstones, intents, the audit trail and failed-job records "
        "(erasure requests); refused while a user has it",
    )
    erase.add_argument("email")
    erase.add_argument("--json", action="store_true")
    erase.set_defaults(handler=_erase)
    commands.add_parser(
        "new-seal-key", help="print a new Fernet key for SEAL_KEYS (the first key seals, all keys open)"
    ).set_defaults(handler=_new_seal_key)
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
    bulk.set_defaults(handler=_import)
    return parser


async def _status(options: argparse.Namespace) -> int:
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


async def _job(options: argparse.Namespace) -> int:
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


async def _failed(options: argparse.Namespace) -> int:
    settings = get_settings()
    async with ProvisioningClient.connect(settings) as client:
        data = await failed_jobs(client.redis, settings.queue_name, limit=options.limit)
    if options.json:
        print(json.dumps(data, sort_keys=True, default=str))
    else:
        Console().print(_failures_table(data, f"failed jobs on {settings.queue_name}"))
    return 0


async def _retry(options: argparse.Namespace) -> int:
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


def _is_bool(annotation: object) -> bool:
    """A payload field typed `bool` or `bool | None`."""
    return annotation is bool or (
        isinstance(annotation, types.UnionType) and bool in typing.get_args(annotation)
    )


def _boolean(text: str) -> bool:
    """A command-line boolean: true/false, yes/no, 1/0, any letter case."""
    value = text.strip().lower()
    if value in {"true", "yes", "1"}:
        return True
    if value in {"false", "no", "0"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


async def _health(options: argparse.Namespace) -> int:
    settings = get_settings()
    scim = None
    if options.scim is not None or options.scim_only:
        scim = await check_scim(options.scim or default_url(settings))
    if options.scim_only:
        assert scim is not None
        if options.json:
            print(json.dumps({"ok": scim.ok, "scim": scim.as_dict()}, sort_keys=True))
        else:
            print(f"scim {scim.url}: {scim.detail}")
            print("healthy" if scim.ok else "UNHEALTHY")
        return 0 if scim.ok else 1
    redis = await connect_redis(settings)
    try:
        report = await check_health(redis, settings)
    finally:
        await redis.aclose(close_connection_pool=True)
    ok = report.ok and (scim is None or scim.ok)
    if options.json:
        data = report.as_dict()
        if scim is not None:
            data.update(ok=ok, scim=scim.as_dict())
        print(json.dumps(data, sort_keys=True))
    else:
        live = ", ".join(
            f"{w['id']} (seen {time.time() - float(w['seen']):.1f} s ago)" for w in report.workers
        )
        print(
            f"queue {settings.queue_name}: {len(report.workers)} live worker(s){': ' + live if live else ''}"
        )
        print(f"database: {report.database}")
        if scim is not None:
            print(f"scim {scim.url}: {scim.detail}")
        print("healthy" if ok else "UNHEALTHY")
    return 0 if ok else 1


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
            failed.append(f"{job.job_id}: {str(error) or 'no result in time'}")
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


@asynccontextmanager
async def _unit_of_work(settings: Settings) -> AsyncIterator[SqlAlchemyUnitOfWork]:
    engine = create_engine(settings)
    try:
        async with open_unit_of_work(create_session_factory(engine)) as uow:
            yield uow
    finally:
        await engine.dispose()


async def _history(options: argparse.Namespace) -> int:
    settings = get_settings()
    key = _identity_key(options.email)
    if key is None:
        return 2
    async with _unit_of_work(settings) as uow, uow:
        rows = [change_record(change) for change in await uow.audit.history(key, limit=options.limit)]
    if options.json:
        print(json.dumps(rows, sort_keys=True))
        return 0
    table = Table(title=f"history of {options.email} (oldest command first)")
    for column in ("as of", "function", "status", "user id", "changes", "job id", "recorded"):
        table.add_column(column, no_wrap=column not in {"changes", "job id"})
    for row in rows:
        changes = ", ".join(
            f"{field}: {value}" if isinstance(value, str) else f"{field}: {value[0]} → {value[1]}"
            for field, value in row["changes"].items()
        )
        table.add_row(
            row["as_of_time"],
            row["function"],
            row["status"],
            str(row["user_id"] or ""),
            changes,
            row["job_id"],
            row["recorded_at"],
        )
    Console().print(table)
    return 0


def _identity_key(email: str) -> str | None:
    """The identity key of an email given on the command line, or None after saying why there is none."""
    try:
        return email_key(email)
    except PydanticCustomError as error:
        print(f"error: {email!r} is not an email the worker accepts: {error}", file=sys.stderr)
        return None


async def _erase(options: argparse.Namespace) -> int:
    settings = get_settings()
    if _identity_key(options.email) is None:
        return 2
    try:
        async with _unit_of_work(settings) as uow:
            removed = await maintenance.erase(uow, options.email, ErasureKeys(settings.erasure_key_list))
    except maintenance.ErasureNotConfigured as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if removed is None:
        print(
            f"error: a user with email {options.email} exists: delete it first "
            f"(python -m worker enqueue delete_user --email {options.email} --wait), then erase",
            file=sys.stderr,
        )
        return 2
    async with ProvisioningClient.connect(settings) as client:
        failures = await erase_failures(client.redis, settings.queue_name, options.email)
    stamps, audit = removed
    report = {"email": options.email, "stamp_rows": stamps, "audit_rows": audit, "failed_jobs": failures}
    if options.json:
        print(json.dumps(report, sort_keys=True))
    else:
        print(
            f"erased {options.email}: {stamps} tombstone/intent row(s), {audit} audit row(s), "
            f"{failures} failed-job record(s)"
        )
    return 0


async def _new_seal_key(options: argparse.Namespace) -> int:
    print(new_seal_key())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    options = _parser().parse_args(argv)
    handler: Handler = options.handler
    return asyncio.run(handler(options))
