"""`python -m worker …` as an operator runs it, pointed at one test's database, Redis and queue."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

from worker.settings import Settings

BOX_DRAWING = frozenset("┏┓┗┛┃━┡┩╇┳┻│─└┘┌┐┼┬┴├┤")
"""The characters of rich's boxes: none of them in plain output."""
FIELD = re.compile(r"([a-z][a-z ]*):(?: +(.*))?")


def settings_env(settings: Settings, **extra: object) -> dict[str, str]:
    """The environment that points a process at `settings`, plus `extra` (names upper-cased)."""
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "REDIS_URL": settings.redis_url.get_secret_value(),
        "QUEUE_NAME": settings.queue_name,
        "COLUMNS": "80",  # what a pipe or a CI log gets, whatever terminal runs the tests
        "ERASURE_KEYS": ",".join(settings.erasure_key_list),
    }
    env.update({name.upper(): str(value) for name, value in extra.items()})
    return env


async def run_cli(
    settings: Settings, *args: str, cwd: Path, stdin: str | None = None, **extra: object
) -> subprocess.CompletedProcess[str]:
    """`python -m worker <args>` in `cwd` (so no developer's `.env` is read), to the end (at most 60 s)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        *args,
        cwd=cwd,
        env=settings_env(settings, **extra),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(
        process.communicate(None if stdin is None else stdin.encode()), timeout=60
    )
    return subprocess.CompletedProcess(list(args), process.returncode or 0, out.decode(), err.decode())


def queue_job_id(settings: Settings) -> str:
    """A job id under the test's queue name, so the run's cleanup of its own keys finds the job's."""
    return f"{settings.queue_name}:job-{uuid.uuid4().hex[:12]}"


def blocks(output: str) -> list[dict[str, list[str]]]:
    """The "key: value" blocks of a command's plain output: each key's lines, stripped (titles skipped)."""
    found = []
    for paragraph in output.split("\n\n"):
        fields: dict[str, list[str]] = {}
        for line in paragraph.splitlines():
            field = None if line.startswith(" ") else FIELD.fullmatch(line)
            if field is not None:
                fields[field[1]] = [field[2] or ""]
            elif fields and line.startswith(" "):
                fields[list(fields)[-1]].append(line.strip())
            else:
                break  # a title, or a table: not a block
        else:
            if fields:
                found.append(fields)
    return found
