"""Fault tests with real worker processes: SIGKILL, SIGTERM, PostgreSQL restarts, failing hooks.

PostgreSQL is restarted on a private cluster (tests/support/servers.py), never the shared one.

Each test prints its figures (run with `-s` to see them): jobs, kills, restarts, reruns, lost and
duplicated counts.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import cast

import pytest
from arq.connections import ArqRedis
from arq.jobs import Job, JobStatus
from pydantic import SecretStr
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tests.support.databases import migrate
from tests.support.ids import new_id
from tests.support.ordering_model import Command, State, final_states
from tests.support.processes import start_worker, stop, wait_until
from tests.support.servers import PrivatePostgres, private_postgres
from tests.support.worker_runner import run_burst
from worker.client import ProvisioningClient
from worker.db.session import SessionFactory
from worker.jobs.serialization import deserialize
from worker.settings import Settings
from worker.wiring import worker_settings

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("committing_sessions")]

ROLES = ("admin", "member", "viewer")
# Fast recovery for tests: a killed worker's jobs come back after JOB_TIMEOUT + 10 s.
FAST = {"max_jobs": 20, "poll_delay": 0.05, "job_timeout": 2, "retry_base_delay": 0.1, "retry_max_delay": 1.0}


async def enqueue_burst(
    client: ProvisioningClient, distinct: int, repeats: int
) -> tuple[list[str], set[str], list[Command]]:
    """`distinct` users, plus `repeats` jobs re-sending some of them in another letter case and role."""
    emails = [f"user{i}@example.com" for i in range(distinct)]
    sent = emails + [emails[i * 7 % distinct].upper() for i in range(repeats)]
    job_ids, commands = [], []
    for i, email in enumerate(sent):
        role = ROLES[(int(email.lower()[4:].split("@")[0]) + (i >= distinct)) % 3]
        job = await client.provision_user(email=email, role=role, job_id=new_id(f"b{i}"))  # type: ignore[arg-type]
        job_ids.append(job.job_id)
        commands.append(
            Command("provision_user", email.replace("@EXAMPLE.COM", "@example.com"), i, job.job_id, role)
        )
    return job_ids, {e.lower() for e in sent}, commands


async def user_states(engine: AsyncEngine) -> dict[str, State]:
    """Every provisioned user, by lower-cased email."""
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT email, role, is_active, hashed_password FROM users"))
        return {row.email.lower(): State(*row) for row in rows}


async def results(redis: ArqRedis, job_ids: Sequence[str]) -> list[dict[str, object] | None]:
    """Every job's stored result record (None where there is none yet)."""
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.get(f"arq:result:{job_id}")
        raw = await pipe.execute()
    return [None if r is None else deserialize(r) for r in raw]


async def user_counts(engine: AsyncEngine) -> tuple[int, int]:
    """(rows, distinct lower-cased emails) in the users table."""
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT count(*), count(DISTINCT key) FROM users"))).one()
    return int(row[0]), int(row[1])


@dataclass
class Tally:
    """A burst's end state: jobs, how many succeeded and ran more than once, rows lost or doubled."""

    jobs: int
    succeeded: int
    rerun: int
    rows: int
    distinct_rows: int
    lost: int

    @classmethod
    async def of(
        cls, redis: ArqRedis, engine: AsyncEngine, job_ids: Sequence[str], emails: set[str]
    ) -> Tally:
        records = await results(redis, job_ids)
        succeeded = [r for r in records if r is not None and r["s"] is True]
        rows, distinct_rows = await user_counts(engine)
        rerun = sum(1 for r in succeeded if cast("int", r["t"]) > 1)
        return cls(len(job_ids), len(succeeded), rerun, rows, distinct_rows, len(emails) - distinct_rows)

    def __str__(self) -> str:
        return (
            f"{self.jobs} jobs, {self.rerun} ran more than once, succeeded {self.succeeded}, "
            f"lost {self.lost}, duplicated {self.rows - self.distinct_rows}"
        )


async def all_done(redis: ArqRedis, job_ids: Sequence[str]) -> bool:
    return all(r is not None for r in await results(redis, job_ids))


async def test_sigkill_mid_burst_loses_and_doubles_nothing(
    settings: Settings, redis: ArqRedis, engine: AsyncEngine, tmp_path: Path
) -> None:
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    job_ids, emails, commands = await enqueue_burst(client, distinct=2000, repeats=400)
    log = tmp_path / "worker.log"
    kills = 0
    worker = start_worker(settings, log, **FAST)
    try:
        for threshold in (300, 1100):  # SIGKILL twice, each time with jobs in flight
            await wait_until(
                partial(_users_at_least, engine, threshold), within=60, what=f"{threshold} users"
            )
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            kills += 1
            worker = start_worker(settings, log, **FAST)
        await wait_until(lambda: all_done(redis, job_ids), within=120, what="every job's result")
    finally:
        stop(worker)

    tally = await Tally.of(redis, engine, job_ids, emails)
    print(f"\nSIGKILL: {len(emails)} distinct emails, {kills} kills; {tally}")
    assert tally.succeeded == len(job_ids)
    assert tally.rows == tally.distinct_rows == len(emails)
    # The re-sent commands are newer: their role and spelling win, whatever ran first or twice.
    assert await user_states(engine) == final_states(commands)


async def _users_at_least(engine: AsyncEngine, count: int) -> bool:
    return (await user_counts(engine))[0] >= count


@pytest.fixture
async def locked_user(
    engine: AsyncEngine, committing_sessions: SessionFactory
) -> AsyncIterator[AsyncConnection]:
    """A user whose state row (every command's lock) this test holds until it ends the connection."""
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO user_states (key, key_version) VALUES ('slow@example.com', 1)"))
        await conn.execute(
            text(
                "INSERT INTO users (key, email, role) "
                "VALUES ('slow@example.com', 'slow@example.com', 'viewer')"
            )
        )
    async with engine.connect() as conn:
        await conn.execute(text("SELECT key FROM user_states WHERE key = 'slow@example.com' FOR UPDATE"))
        try:
            yield conn
        finally:
            await conn.rollback()


async def test_sigterm_lets_the_running_job_finish_then_exits_zero(
    settings: Settings, redis: ArqRedis, locked_user: AsyncConnection, tmp_path: Path
) -> None:
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    worker = start_worker(settings, tmp_path / "worker.log", job_completion_wait=15, poll_delay=0.05)
    try:
        running = await client.set_user_role(email="slow@example.com", role="admin", job_id=new_id())
        await wait_until(lambda: _in_progress(redis, running), within=20, what="the job to start")
        worker.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        later = await client.provision_user(email="after@example.com", role="member", job_id=new_id())
        await asyncio.sleep(1.0)  # the job is still blocked on our row lock; the worker waits for it
        assert worker.poll() is None
        await locked_user.rollback()  # release the lock: the job can finish now
        exit_code = await asyncio.to_thread(worker.wait, 20)
    finally:
        stop(worker)
    assert exit_code == 0
    assert await running.result(timeout=1) == {
        "status": "updated",
        "email": "slow@example.com",
        "user_id": 1,
        "role": "admin",
        "is_active": True,
    }
    assert await later.status() == JobStatus.queued  # taken by no one after SIGTERM
    print(f"\nSIGTERM: in-flight job finished inside the grace period; worker exit status {exit_code}")


async def test_a_job_cut_off_at_the_deadline_runs_again_harmlessly(
    settings: Settings, redis: ArqRedis, locked_user: AsyncConnection, tmp_path: Path
) -> None:
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    worker = start_worker(settings, tmp_path / "worker.log", job_completion_wait=1, poll_delay=0.05)
    try:
        job = await client.set_user_role(email="slow@example.com", role="member", job_id=new_id())
        await wait_until(lambda: _in_progress(redis, job), within=20, what="the job to start")
        worker.send_signal(signal.SIGTERM)
        exit_code = await asyncio.to_thread(worker.wait, 20)  # grace runs out with the job still blocked
    finally:
        stop(worker)
    assert exit_code == 0
    assert await job.status() == JobStatus.queued  # cancelled and put back, not failed
    await locked_user.rollback()

    await run_burst(settings)  # another worker picks it up
    info = await job.result_info()
    assert info is not None
    assert (info.success, info.job_try, info.result["status"]) == (True, 2, "updated")


async def _in_progress(redis: ArqRedis, job: Job) -> bool:
    return await job.status() == JobStatus.in_progress


async def _terminate_backends(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        killed = await conn.scalar(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    return f"pg_terminate_backend x{killed}"


@pytest.fixture
async def private_database() -> AsyncIterator[tuple[PrivatePostgres, str]]:
    """A migrated database on a PostgreSQL cluster of this test's own, which it may restart."""
    with private_postgres() as cluster:
        admin = create_async_engine(cluster.admin_url, isolation_level="AUTOCOMMIT")
        try:
            async with admin.connect() as conn:
                await conn.execute(text('CREATE DATABASE "faults"'))
        finally:
            await admin.dispose()
        url = make_url(cluster.admin_url).set(database="faults").render_as_string(hide_password=False)
        await migrate(url)
        yield cluster, url


async def test_postgres_restarts_mid_burst_are_retried_and_the_worker_stays_up(
    settings: Settings, redis: ArqRedis, private_database: tuple[PrivatePostgres, str], tmp_path: Path
) -> None:
    cluster, url = private_database
    own = settings.model_copy(update={"database_url": SecretStr(url)})
    engine = create_async_engine(url, pool_pre_ping=True)  # its connections are cut too
    try:
        await _survives_outages(own, redis, engine, tmp_path, "restart", lambda: _restart(cluster))
    finally:
        await engine.dispose()


async def test_terminated_backends_mid_burst_are_retried_and_the_worker_stays_up(
    settings: Settings, redis: ArqRedis, engine: AsyncEngine, tmp_path: Path
) -> None:
    await _survives_outages(
        settings, redis, engine, tmp_path, "terminate", lambda: _terminate_backends(engine)
    )


async def _restart(cluster: PrivatePostgres) -> str:
    await asyncio.to_thread(cluster.restart)
    return "pg_ctl restart -m fast"


async def _survives_outages(
    settings: Settings,
    redis: ArqRedis,
    engine: AsyncEngine,
    tmp_path: Path,
    outage: str,
    cause: Callable[[], Awaitable[str]],
) -> None:
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    job_ids, emails, commands = await enqueue_burst(client, distinct=1500, repeats=0)
    worker = start_worker(settings, tmp_path / "worker.log", **{**FAST, "job_timeout": 10})
    done = []
    try:
        for threshold in (300, 800):
            await wait_until(
                partial(_users_at_least, engine, threshold), within=60, what=f"{threshold} users"
            )
            done.append(await cause())
            assert worker.poll() is None, "the worker exited during the outage"
        await wait_until(lambda: all_done(redis, job_ids), within=120, what="every job's result")
        assert worker.poll() is None, "the worker exited"
    finally:
        stop(worker)

    tally = await Tally.of(redis, engine, job_ids, emails)
    print(f"\nPostgreSQL {outage}: outages {done}; {tally}")
    assert tally.succeeded == len(job_ids)
    if outage == "restart":
        assert tally.rerun > 0  # a restart always hits jobs in flight (terminating idle backends may not)
    assert tally.rows == tally.distinct_rows == len(emails)
    assert await user_states(engine) == final_states(commands)


async def test_a_failing_per_job_hook_is_logged_and_contained(
    settings: Settings, redis: ArqRedis, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken_hook(ctx: dict[str, object]) -> None:
        raise RuntimeError("metrics backend is down")

    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    job = await client.provision_user(email="hooked@example.com", role="member", job_id=new_id())
    options = worker_settings(
        settings, on_job_start=broken_hook, on_job_end=broken_hook, after_job_end=broken_hook
    )
    caplog.set_level(logging.ERROR, logger="worker.runtime.hooks")

    worker = await run_burst(
        settings, **{k: options[k] for k in ("on_job_start", "on_job_end", "after_job_end")}
    )

    assert (worker.jobs_complete, worker.jobs_failed) == (1, 0)
    assert (await job.result(timeout=1))["status"] == "created"
    failures = [r for r in caplog.records if "metrics backend is down" in str(r.exc_info)]
    assert len(failures) == 3
    assert await job.status() == JobStatus.complete  # on_job_end failing did not strand it in progress
