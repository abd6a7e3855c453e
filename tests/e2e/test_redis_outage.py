"""Redis outages under a real worker process, on a private redis-server (append-only file on).

The shared Redis is never touched: each test starts its own server on a port of its own, stops
and restarts it, and shuts it down whatever happens.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from arq.connections import ArqRedis
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.ids import new_id
from tests.support.processes import start_worker, stop, wait_until
from tests.support.servers import PrivateRedis, PrivateSentinel, private_redis, private_sentinel, wait_for
from worker.client import ProvisioningClient, connect_redis
from worker.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("committing_sessions")]

FAST = {"poll_delay": 0.01, "job_timeout": 5, "retry_base_delay": 0.1, "retry_max_delay": 1.0}


def on(settings: Settings, server: PrivateRedis) -> Settings:
    """`settings` with the private server as REDIS_URL."""
    return settings.model_copy(update={"redis_url": SecretStr(server.url)})


async def _client_redis(settings: Settings) -> ArqRedis:
    return await connect_redis(settings)


async def _provisioned(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT count(*) FROM users")) or 0)


async def _results(redis: ArqRedis, job_ids: list[str]) -> int:
    return int(await redis.exists(*(f"arq:result:{job_id}" for job_id in job_ids)))


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    with private_redis(tmp_path / "redis") as started:
        yield started


@dataclass
class Burst:
    """A 2,000-job burst run across an outage: what came of it."""

    jobs: int
    users: int
    pid: int
    resumed: list[str]
    done_after: float


async def _burst_across(
    settings: Settings,
    engine: AsyncEngine,
    tmp_path: Path,
    outage: Callable[[subprocess.Popen[bytes]], Awaitable[None]],
    *,
    after_enqueue: Callable[[ArqRedis], Awaitable[None]] | None = None,
) -> Burst:
    """Queue 2,000 provision_user jobs, start a worker, cause `outage` once 300 users exist, and wait
    for every job's result; the worker must stay up throughout and stop cleanly."""
    redis = await _client_redis(settings)
    try:
        client = ProvisioningClient(redis, queue_name=settings.queue_name)
        job_ids = [
            (await client.provision_user(email=f"b{n}@example.com", role="member", job_id=new_id())).job_id
            for n in range(2000)
        ]
        if after_enqueue is not None:
            await after_enqueue(redis)
        log = tmp_path / "worker.log"
        worker = start_worker(settings, log, **FAST)
        try:
            await wait_until(lambda: _at_least(engine, 300), within=60, what="300 users")
            started = time.monotonic()
            await outage(worker)
            assert worker.poll() is None, "the worker exited during the outage"
            await wait_until(lambda: _at_least(engine, len(job_ids)), within=120, what="every user")
            await wait_until(lambda: _all(redis, job_ids), within=120, what="every job's result")
            done_after = time.monotonic() - started
            assert worker.poll() is None, "the worker exited"
        finally:
            assert stop(worker) == 0
        infos = [await client.job(job_id).result_info() for job_id in job_ids]
        assert all(info is not None and info.success for info in infos)
        resumed = re.findall(r"is back after ([0-9.]+)s", log.read_text())
        return Burst(len(job_ids), await _provisioned(engine), worker.pid, resumed, done_after)
    finally:
        await redis.aclose(close_connection_pool=True)


async def test_a_redis_restart_mid_burst_loses_nothing_and_the_worker_stays_up(
    settings: Settings, server: PrivateRedis, engine: AsyncEngine, tmp_path: Path
) -> None:
    async def restart(worker: subprocess.Popen[bytes]) -> None:
        server.stop()
        await asyncio.sleep(2.0)
        assert worker.poll() is None, "the worker exited when Redis went away"
        server.start()

    burst = await _burst_across(on(settings, server), engine, tmp_path, restart)

    print(
        f"\nRedis restart (2 s down): {burst.jobs} jobs, {burst.users} users, worker pid {burst.pid} "
        f"throughout, polling again {burst.resumed} s after the outage began, burst done "
        f"{burst.done_after:.1f}s after the stop"
    )
    assert burst.users == burst.jobs
    assert burst.resumed, "the worker never logged that Redis was back"


async def _at_least(engine: AsyncEngine, count: int) -> bool:
    return await _provisioned(engine) >= count


async def _all(redis: ArqRedis, job_ids: list[str]) -> bool:
    try:
        return await _results(redis, job_ids) == len(job_ids)
    except OSError:
        return False


def _wait_for_line(log: Path, fragment: str, worker: subprocess.Popen[bytes]) -> None:
    """Block until the worker's log holds `fragment` (its start-up can take seconds on a busy
    machine); fail if the worker exits first or it never comes."""

    def logged() -> bool:
        assert worker.poll() is None, f"the worker exited before logging {fragment!r}"
        return fragment in log.read_text()

    wait_for(logged, what=f"the worker to log {fragment!r}", within=60)


def test_an_outage_longer_than_redis_max_outage_exits_1_for_a_supervisor(
    settings: Settings, server: PrivateRedis, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    worker = start_worker(on(settings, server), log, redis_max_outage=2, **FAST)
    try:
        _wait_for_line(log, "database ", worker)  # on_startup ran: the worker is polling
        server.stop()
        exit_code = worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
    assert exit_code == 1
    text_ = log.read_text()
    assert "lost Redis at redis://127.0.0.1:" in text_
    assert "longer than REDIS_MAX_OUTAGE (2s): exiting for a supervisor to restart the worker" in text_


async def test_a_worker_started_before_redis_waits_for_it(
    settings: Settings, engine: AsyncEngine, tmp_path: Path
) -> None:
    server = PrivateRedis(tmp_path / "redis")  # not started yet
    private = on(settings, server)
    worker = start_worker(private, tmp_path / "worker.log", **FAST)
    try:
        await asyncio.sleep(2.0)
        assert worker.poll() is None, "the worker gave up on Redis at start-up"
        server.start()
        redis = await _client_redis(private)
        try:
            job = await ProvisioningClient(redis, queue_name=private.queue_name).provision_user(
                email="late-redis@example.com", role="viewer", job_id=new_id()
            )
            assert (await job.result(timeout=60))["status"] == "created"
        finally:
            await redis.aclose(close_connection_pool=True)
    finally:
        stop(worker)
        server.stop()


def test_a_worker_that_never_reaches_redis_exits_1_naming_the_fix(settings: Settings, tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path / "redis")  # never started
    log = tmp_path / "worker.log"
    worker = start_worker(on(settings, server), log, redis_max_outage=1.5)
    exit_code = worker.wait(timeout=60)
    assert exit_code == 1
    assert "cannot reach Redis at redis://127.0.0.1:" in log.read_text()
    assert "REDIS_MAX_OUTAGE is 1.5s" in log.read_text()


async def test_the_client_retries_an_enqueue_across_a_restart(
    settings: Settings, server: PrivateRedis
) -> None:
    private = on(settings, server)
    redis = await _client_redis(private)
    try:
        client = ProvisioningClient(redis, queue_name=private.queue_name, retry_for=20)
        server.stop()
        sending = asyncio.create_task(client.provision_user(email="patient@example.com", role="admin"))
        await asyncio.sleep(1.0)
        assert not sending.done()  # still trying
        server.start()
        job = await asyncio.wait_for(sending, timeout=20)
        assert await redis.zcard(private.queue_name) == 1
        assert (await job.info()).kwargs["email"] == "patient@example.com"  # type: ignore[union-attr]
    finally:
        await redis.aclose(close_connection_pool=True)


async def test_a_sentinel_failover_mid_burst_loses_nothing_and_the_worker_follows(
    settings: Settings, engine: AsyncEngine, tmp_path: Path
) -> None:
    with private_sentinel(tmp_path / "sentinel") as sentinel:
        old_master = sentinel.master_port()
        promoted: list[float] = []

        async def replicated(redis: ArqRedis) -> None:
            # Replication is asynchronous: make sure the queue reached the replica before the crash.
            assert await redis.execute_command("WAIT", 1, 5000) == 1  # type: ignore[no-untyped-call]  # unannotated in redis-py

        async def fail_over(worker: subprocess.Popen[bytes]) -> None:
            killed_at = time.monotonic()
            sentinel.kill_master()
            await wait_until(
                lambda: _new_master(sentinel, old_master),
                within=30,
                what="the sentinel to promote the replica",
            )
            promoted.append(time.monotonic() - killed_at)

        private = settings.model_copy(update={"redis_url": SecretStr(sentinel.url)})
        burst = await _burst_across(private, engine, tmp_path, fail_over, after_enqueue=replicated)

        print(
            f"\nSentinel failover: {burst.jobs} jobs, {burst.users} users, master on {old_master} "
            f"SIGKILLed, replica promoted after {promoted[0]:.1f}s, worker pid {burst.pid} throughout, "
            f"polling again {burst.resumed} s after losing the master, burst done {burst.done_after:.1f}s "
            "after the kill"
        )
        assert burst.users == burst.jobs
        assert sentinel.master_port() == sentinel.replica.port


async def _new_master(sentinel: PrivateSentinel, old: int) -> bool:
    return await asyncio.to_thread(sentinel.master_port) != old


async def test_a_password_protected_master_behind_a_password_protected_sentinel(
    settings: Settings, tmp_path: Path
) -> None:
    """REDIS_URL's credentials go to the master, REDIS_SENTINEL_PASSWORD to the sentinels."""
    with private_sentinel(
        tmp_path / "sentinel", password="master-secret", sentinel_password="sentinel-secret"
    ) as sentinel:
        private = settings.model_copy(
            update={
                "redis_url": SecretStr(sentinel.url),
                "redis_sentinel_password": SecretStr("sentinel-secret"),
            }
        )
        assert "master-secret" not in private.redis_url_masked
        redis = await _client_redis(private)
        try:
            job = await ProvisioningClient(redis, queue_name=private.queue_name).provision_user(
                email="guarded@example.com", role="viewer", job_id=new_id()
            )
            log = tmp_path / "worker.log"
            worker = start_worker(private, log, **FAST, redis_sentinel_password="sentinel-secret")
            try:
                assert (await job.result(timeout=60))["status"] == "created"
            finally:
                assert stop(worker) == 0
            assert "master-secret" not in log.read_text()
            assert "sentinel-secret" not in log.read_text()
        finally:
            await redis.aclose(close_connection_pool=True)
        without = settings.model_copy(update={"redis_url": SecretStr(sentinel.url)})
        with pytest.raises(Exception, match=r"(?i)auth"):
            await _client_redis(without)  # the sentinel refuses a client without its password
