"""Per-worker health records in Redis, and the check behind `python -m worker health`.

Each worker writes `<queue>:workers:<id>` every HEALTH_CHECK_INTERVAL seconds with a time-to-live
of twice that, so a worker that dies (SIGKILL, OOM, lost host) disappears within 2 x interval;
a worker that stops cleanly deletes its record at once. ARQ's own health key is one per queue
and is deleted by whichever worker stops first, so it cannot tell how many workers are alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import Pool

from worker.db.migrations import schema_state
from worker.db.session import create_engine
from worker.retrying import cannot_reach
from worker.runtime import metrics
from worker.settings import Settings


def record_prefix(queue_name: str) -> str:
    """Where the queue's worker records live."""
    return f"{queue_name}:workers:"


class HealthReporter:
    """Keeps this worker's record fresh until stopped."""

    def __init__(self, redis: ArqRedis, settings: Settings, pool: Pool | None = None) -> None:
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.key = record_prefix(settings.queue_name) + self.worker_id
        self._redis = redis
        self._pool = pool
        self._queue = settings.queue_name
        self._interval = settings.health_check_interval
        self._started = time.time()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Write the record now, then every interval."""
        await self._write()
        self._task = asyncio.create_task(self._refresh(), name="health-reporter")

    async def stop(self) -> None:
        """Stop refreshing and delete the record."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):  # Redis may be the thing that is down
            await self._redis.delete(self.key)

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            with contextlib.suppress(Exception):  # a missed beat is reported by the expiry, not by a crash
                await self._write()

    async def _write(self) -> None:
        metrics.QUEUE_DEPTH.set(await self._redis.zcard(self._queue))
        if self._pool is not None:
            metrics.DB_POOL_CHECKED_OUT.set(self._pool.checkedout())  # type: ignore[attr-defined]
        record = {
            "id": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": self._started,
            "seen": time.time(),
            "interval": self._interval,
        }
        await self._redis.set(self.key, json.dumps(record), px=int(self._interval * 2000))


@dataclass
class HealthReport:
    """What `python -m worker health` found."""

    workers: list[dict[str, Any]] = field(default_factory=list)
    database: str = ""
    database_ok: bool = False

    @property
    def ok(self) -> bool:
        """Healthy: at least one live worker serves the queue, and the database is reachable and at head."""
        return bool(self.workers) and self.database_ok

    def as_dict(self) -> dict[str, Any]:
        """For `--json`."""
        return {
            "ok": self.ok,
            "workers": self.workers,
            "database": self.database,
            "database_ok": self.database_ok,
        }


async def check_health(redis: ArqRedis, settings: Settings) -> HealthReport:
    """Look for live workers on the queue and at the database."""
    report = HealthReport()
    keys = [key async for key in redis.scan_iter(match=record_prefix(settings.queue_name) + "*", count=1000)]
    for raw in await redis.mget(keys) if keys else []:
        if raw is not None:
            with contextlib.suppress(ValueError):
                report.workers.append(json.loads(raw))
    engine = create_engine(settings)
    try:
        state = await schema_state(engine)
        report.database, report.database_ok = state.describe(), state.at_head
    except (OSError, SQLAlchemyError) as error:
        report.database = cannot_reach("PostgreSQL", settings.database_url_masked, error)
    finally:
        await engine.dispose()
    return report
