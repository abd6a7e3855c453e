"""Worker processes as operators run them (`arq worker.main.WorkerSettings`), for fault tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def worker_env(settings: Settings, **extra: object) -> dict[str, str]:
    """The environment that points a worker process at `settings`' database, Redis and queue."""
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "REDIS_URL": settings.redis_url.get_secret_value(),
        "QUEUE_NAME": settings.queue_name,
        "LOG_FORMAT": "json",
        "ERASURE_KEYS": ",".join(settings.erasure_key_list),
    }
    env.update({name.upper(): str(value) for name, value in extra.items()})
    return env


def run_module(
    *args: str, env: dict[str, str], stdin: str | None = None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """`python -m <args>` from the project root, to the end (at most 60 s), its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        input=stdin,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


def start_module(*args: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start `python -m <args>` from the project root, its output going to `log_path`."""
    log = log_path.open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    finally:
        log.close()  # the child has its own descriptor


def start_worker(settings: Settings, log_path: Path, **extra: object) -> subprocess.Popen[bytes]:
    """Start `arq worker.main.WorkerSettings`, its output going to `log_path`."""
    env = worker_env(settings, **extra)
    return start_module("arq", "worker.main.WorkerSettings", env=env, log_path=log_path)


def stop(process: subprocess.Popen[bytes], *, timeout: float = 30) -> int:
    """SIGTERM, then SIGKILL if it does not exit in time; returns the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, within: float, what: str, interval: float = 0.1
) -> None:
    """Poll `condition` until it holds; fail the test naming `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {within:g}s waiting for {what}")
        await asyncio.sleep(interval)
