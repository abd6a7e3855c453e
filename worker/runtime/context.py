"""What ARQ's `ctx` holds for our hooks and tasks."""

from __future__ import annotations

from asyncio import Semaphore
from datetime import datetime
from typing import Any, TypedDict

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.db.session import SessionFactory
from worker.jobs.sealing import KeyRing
from worker.passwords.hashing import PasswordHashing
from worker.runtime.group_commit import CommandGroups
from worker.runtime.health import HealthReporter
from worker.services.erasure import ErasureKeys
from worker.settings import Settings


class WorkerContext(TypedDict, total=False):
    """`ctx` for the worker's lifetime: settings given at creation, the rest built in `startup`."""

    settings: Settings
    redis: ArqRedis
    engine: AsyncEngine
    session_factory: SessionFactory
    hashing: PasswordHashing
    command_groups: CommandGroups | None
    bulk_slots: Semaphore
    health: HealthReporter
    metrics_server: Any
    key_ring: KeyRing | None
    erasure: ErasureKeys


class JobContext(WorkerContext, total=False):
    """`ctx` as a task sees it: the worker's, plus ARQ's per-job keys."""

    job_id: str
    job_try: int
    enqueue_time: datetime
    score: int
