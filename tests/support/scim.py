"""The SCIM service as operators run it: `python -m worker scim` and a worker behind it, real sockets.

`scim_stack` starts both processes on this test run's database, a queue of their own and a free
port, and stops them whatever happens (SIGTERM, then SIGKILL). Their output goes to files the
tests can read (`ScimStack.logs()`), JSON lines.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from tests.support.processes import start_module, start_worker, stop, worker_env
from tests.support.settings import make_settings
from tests.support.tcp_proxy import free_port
from worker.jobs.sealing import new_seal_key
from worker.runtime.health import record_prefix
from worker.settings import Settings

SCIM_MEDIA_TYPE = "application/scim+json"
BASE_PATH = "/scim/v2"


def new_token() -> str:
    """A bearer token for one test run's SCIM service."""
    return f"scim-test-{uuid.uuid4().hex}{uuid.uuid4().hex}"


@dataclass
class ScimStack:
    """A running SCIM service and the worker behind it."""

    settings: Settings
    port: int
    tokens: list[str]
    scim_log: Path
    worker_log: Path
    scim: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def root_url(self) -> str:
        """http://127.0.0.1:<port>, where /healthz lives."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The SCIM base URL (…/scim/v2)."""
        return self.root_url + BASE_PATH

    @property
    def token(self) -> str:
        """The first (current) token."""
        return self.tokens[0]

    def client(self, token: str | None = None, **options: Any) -> httpx.AsyncClient:
        """An httpx client on the SCIM base URL, authenticated with `token` (default: the first one)."""
        headers = {"Authorization": f"Bearer {token or self.token}", "Accept": SCIM_MEDIA_TYPE}
        return httpx.AsyncClient(
            base_url=self.base_url + "/", headers=headers, timeout=options.pop("timeout", 30), **options
        )

    def logs(self) -> str:
        """Everything both processes have written so far."""
        return self.scim_log.read_text(errors="replace") + self.worker_log.read_text(errors="replace")

    def running(self) -> bool:
        """Both processes are still alive."""
        return self.scim.poll() is None and self.worker.poll() is None


def scim_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings for a SCIM stack: a queue of its own, two tokens, a seal key."""
    values: dict[str, Any] = {
        "scim_tokens": ",".join([new_token(), new_token()]),
        "seal_keys": new_seal_key(),
        "scim_host": "127.0.0.1",
        "scim_port": free_port(),
    }
    values.update(overrides)
    return make_settings(database_url, **values)


def _scim_values(settings: Settings) -> dict[str, object]:
    """`settings`' SCIM and sealing settings, which both processes need."""
    return {
        "scim_host": settings.scim_host,
        "scim_port": settings.scim_port,
        "scim_job_wait": settings.scim_job_wait,
        "seal_keys": ",".join(settings.seal_key_list),
        "scim_tokens": ",".join(settings.scim_token_list),
    }


def scim_env(settings: Settings, **extra: object) -> dict[str, str]:
    """The environment of both processes: `settings`, its SCIM and sealing settings, JSON logs."""
    return worker_env(settings, **{**_scim_values(settings), **extra})


def start_scim(settings: Settings, log_path: Path, **extra: object) -> subprocess.Popen[bytes]:
    """Start `python -m worker scim`, its output going to `log_path`."""
    return start_module("worker", "scim", env=scim_env(settings, **extra), log_path=log_path)


def start_scim_worker(settings: Settings, log_path: Path, **extra: object) -> subprocess.Popen[bytes]:
    """Start a worker (`arq worker.main.WorkerSettings`) on `settings`' queue, with the seal keys."""
    return start_worker(settings, log_path, **{**_scim_values(settings), "health_check_interval": 1, **extra})


async def wait_for_scim(
    url: str, process: subprocess.Popen[bytes], log_path: Path, *, within: float = 30
) -> None:
    """Until GET <url>/healthz answers 200; fails with the log's tail if the process exits first."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    f"`python -m worker scim` exited {process.returncode}:\n{_tail(log_path)}"
                )
            try:
                if (await client.get(url + "/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the SCIM service did not answer on {url} within {within:g}s")
            await asyncio.sleep(0.1)


async def wait_for_worker(settings: Settings, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Until the worker's health record is in Redis (it serves the queue)."""
    client = aioredis.Redis.from_url(settings.redis_url.get_secret_value())
    deadline = time.monotonic() + 30
    try:
        while not [k async for k in client.scan_iter(match=record_prefix(settings.queue_name) + "*")]:
            if process.poll() is not None:
                raise AssertionError(f"the worker exited {process.returncode}:\n{_tail(log_path)}")
            if time.monotonic() > deadline:
                raise AssertionError("the worker did not start within 30s")
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()


@asynccontextmanager
async def running_stack(settings: Settings, logs: Path, **extra: object) -> AsyncIterator[ScimStack]:
    """A worker and `python -m worker scim` on `settings`, both stopped on the way out."""
    scim_log, worker_log = _log_files(logs)
    with _stopped_at_exit() as started:
        worker = start_scim_worker(settings, worker_log)
        started.append(worker)
        scim = start_scim(settings, scim_log, **extra)
        started.append(scim)
        stack = ScimStack(
            settings, settings.scim_port, settings.scim_token_list, scim_log, worker_log, scim, worker, extra
        )
        await wait_for_worker(settings, worker, worker_log)
        await wait_for_scim(stack.root_url, scim, scim_log)
        yield stack


def _tail(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-3000:]


def _log_files(directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    return directory / "scim.log", directory / "worker.log"


@contextmanager
def _stopped_at_exit() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for process in reversed(started):  # the SCIM service first: nothing new reaches the worker
            stop(process)


@pytest.fixture(scope="module")
async def scim_stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ScimStack]:
    """One SCIM service and worker for a test module (tests use emails of their own)."""
    settings = scim_settings(database_url)
    async with running_stack(settings, tmp_path_factory.mktemp("scim")) as stack:
        yield stack
