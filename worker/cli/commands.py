"""Command line: `python -m worker COMMAND …`; the parser, and the handler each command runs."""

from __future__ import annotations

import argparse
import asyncio
import types
import typing
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from worker.cli import scim_server
from worker.cli.enqueue import enqueue_command, import_command, new_seal_key_command
from worker.cli.health import health_command
from worker.cli.personal_data import erase_command, history_command
from worker.cli.queue import failed_command, job_command, retry_command, status_command
from worker.jobs.payloads import PAYLOADS

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
"""A subcommand: runs with the parsed options, returns the exit status."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m worker", description="Provisioning worker tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    enqueue = commands.add_parser("enqueue", help="enqueue a job (see docs/jobs.md)")
    enqueue.set_defaults(handler=enqueue_command)
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
    _output_options(health)
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
    health.set_defaults(handler=health_command)
    scim = commands.add_parser(
        "scim", help="serve SCIM 2.0 on SCIM_HOST:SCIM_PORT under /scim/v2 (README, SCIM); needs SCIM_TOKENS"
    )
    scim.set_defaults(handler=scim_server.command)
    status = commands.add_parser(
        "status", help="queue depth, deferred and running jobs, live workers, recent failures"
    )
    _output_options(status)
    status.set_defaults(handler=status_command)
    job = commands.add_parser("job", help="one job's state, tries, and result or error")
    job.add_argument("job_id")
    _output_options(job)
    job.set_defaults(handler=job_command)
    failed = commands.add_parser(
        "failed", help="failed jobs, newest first (kept FAILED_JOB_RETENTION seconds)"
    )
    failed.add_argument("--limit", type=int, default=50)
    _output_options(failed)
    failed.set_defaults(handler=failed_command)
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
    retry.set_defaults(handler=retry_command)
    history = commands.add_parser("history", help="the audit trail of one email, oldest command first")
    history.add_argument("email")
    history.add_argument("--limit", type=int, default=1000)
    _output_options(history)
    history.set_defaults(handler=history_command)
    erase = commands.add_parser(
        "erase",
        help="remove an email from tombstones, intents, the audit trail and failed-job records "
        "(erasure requests); refused while a user has it",
    )
    erase.add_argument("email")
    erase.add_argument("--json", action="store_true")
    erase.set_defaults(handler=erase_command)
    commands.add_parser(
        "new-seal-key", help="print a new Fernet key for SEAL_KEYS (the first key seals, all keys open)"
    ).set_defaults(handler=new_seal_key_command)
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
    _output_options(bulk)
    bulk.set_defaults(handler=import_command)
    return parser


def _output_options(command: argparse.ArgumentParser) -> None:
    """`--json` for scripts, `--table` for boxed tables where stdout is not a terminal."""
    output = command.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON (every value in full)")
    output.add_argument(
        "--table", action="store_true", help="draw tables with boxes even when stdout is not a terminal"
    )


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    options = _parser().parse_args(argv)
    handler: Handler = options.handler
    return asyncio.run(handler(options))
