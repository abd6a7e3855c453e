"""SCIM `POST /Users` → 201 through `python -m worker scim` and one worker process, over real sockets.

Two figures: creates/s with `concurrency` requests in flight, and the p50/p99 of each request's time
(sent → 201 received, so the job's round trip through Redis, the worker and PostgreSQL included)
at a fixed offered rate. Both processes run as operators run them; uvloop where installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bench.common import BENCH_REDIS_URL, RUN, percentile

ROOT = Path(__file__).resolve().parents[1]
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env(url: str, queue: str, token: str, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": BENCH_REDIS_URL,
        "QUEUE_NAME": queue,
        "SCIM_TOKENS": token,
        "SCIM_HOST": "127.0.0.1",
        "SCIM_PORT": str(port),
        "LOG_FORMAT": "json",
    }


@asynccontextmanager
async def _stack(url: str) -> AsyncIterator[tuple[int, str]]:
    """A worker and the SCIM service on `url`'s database, both stopped after: (port, token)."""
    token, port = uuid.uuid4().hex + uuid.uuid4().hex, _free_port()
    env = _env(url, f"bench-{RUN}:scim", token, port)
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a full pipe would stall a process
        processes = [
            subprocess.Popen(  # noqa: ASYNC220 - started once, stopped below
                [sys.executable, "-m", *command],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
            for command in (["arq", "worker.main.WorkerSettings"], ["worker", "scim"])
        ]
        try:
            await _ready(port, token, processes)
            yield port, token
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                await asyncio.to_thread(process.wait, 30)


async def _ready(port: int, token: str, processes: list[subprocess.Popen[bytes]]) -> None:
    """Until one POST has been answered 201 (the worker serves the queue)."""
    deadline = time.monotonic() + 60
    while True:
        if any(p.poll() is not None for p in processes):
            raise RuntimeError("the SCIM service or its worker exited during start-up (see its log)")
        connection = _Connection(port, token)
        try:
            await connection.post_user("warm-up")
            return
        except (OSError, RuntimeError, asyncio.IncompleteReadError, IndexError):
            pass
        finally:
            await connection.close()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the SCIM service on port {port} did not create a user within 60 s")
        await asyncio.sleep(0.2)


def _user(label: str) -> dict[str, object]:
    return {"schemas": [USER_SCHEMA], "userName": f"{label}-{uuid.uuid4().hex[:12]}@example.com"}


class _Connection:
    """One keep-alive HTTP/1.1 connection that sends POST /Users and reads the status.

    The load generator shares two cores with the service, its worker, PostgreSQL and Redis: httpx
    spent more CPU per request than the service did, and so measured itself. Requests go out as
    pre-built bytes; only the status line and Content-Length of each answer are read.
    """

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post_user(self, label: str) -> int:
        if self.writer is None or self.reader is None or self.reader.at_eof():
            # new, or closed by the server after its keep-alive timeout
            await self.close()
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        body = json.dumps(_user(label)).encode()
        head = (
            f"POST /scim/v2/Users HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Authorization: Bearer {self.token}\r\nContent-Type: application/scim+json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        payload = await self.reader.readexactly(length)
        status = int(status_line.split()[1])
        if status != 201:
            raise RuntimeError(f"POST /Users answered {status}: {payload[:500]!r}")
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
            self.reader = self.writer = None


async def _timed(connection: _Connection, label: str) -> float:
    """One POST /Users → 201 on `connection`; its time in ms."""
    started = time.perf_counter()
    await connection.post_user(label)
    return (time.perf_counter() - started) * 1000


async def creates_per_second(url: str, requests: int, concurrency: int) -> float:
    """POST → 201 per second with `concurrency` requests in flight (one connection each)."""
    async with _stack(url) as (port, token):
        connections = [_Connection(port, token) for _ in range(concurrency)]
        todo = iter(range(requests))

        async def run(connection: _Connection) -> None:
            for i in todo:
                await _timed(connection, f"rate{i}")

        try:
            started = time.perf_counter()
            await asyncio.gather(*(run(connection) for connection in connections))
            return requests / (time.perf_counter() - started)
        finally:
            await asyncio.gather(*(connection.close() for connection in connections))


async def latency(url: str, seconds: float, rate: int = 50) -> tuple[float, float]:
    """(p50 ms, p99 ms) of POST → 201 at `rate` requests/s offered (each sent on schedule, on an
    idle connection of a pool, so that no request waits behind another)."""
    async with _stack(url) as (port, token):
        idle = [_Connection(port, token) for _ in range(rate)]

        async def one(i: int) -> float:
            connection = idle.pop() if idle else _Connection(port, token)
            try:
                return await _timed(connection, f"lat{i}")
            finally:
                idle.append(connection)

        interval, started, tasks = 1 / rate, time.perf_counter(), []
        try:
            for i in range(int(seconds * rate)):
                await asyncio.sleep(max(0.0, started + i * interval - time.perf_counter()))
                tasks.append(asyncio.create_task(one(i)))
            times = list(await asyncio.gather(*tasks))
        finally:
            await asyncio.gather(*(connection.close() for connection in idle))
    return percentile(times, 50), percentile(times, 99)
