"""`make bench`: the worker against the queue's ceiling, a peer (SAQ), and the database's ceilings.

    python -m bench.run [--jobs 5000] [--batch 1000] [--bulk-batches 50] [--latency-seconds 10] [--write]

Every measurement uses its own database and Redis keys (named after this run) and removes them.
Worker processes run exactly as operators run them (`arq … --burst`); rates are taken from the
jobs' own start and finish times, so process start-up is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from arq.connections import ArqRedis
from saq import Queue
from sqlalchemy import make_url

from bench import hashing
from bench.common import BENCH_REDIS_URL, RUN, bench_database, machine, now, percentile
from tests.support.servers import pgbouncer
from worker.client import ProvisioningClient, connect_redis
from worker.jobs.serialization import deserialize, serialize
from worker.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.md"


@dataclass
class Row:
    """One line of the report."""

    name: str
    value: float
    unit: str
    ratio: str = ""
    target: str = ""


def _settings(url: str, label: str) -> Settings:
    return Settings(
        _env_file=None, database_url=url, redis_url=BENCH_REDIS_URL, queue_name=f"bench-{RUN}:{label}"
    )


def _env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "REDIS_URL": settings.redis_url.get_secret_value(),
        "QUEUE_NAME": settings.queue_name,
        "DATABASE_POOLER": settings.database_pooler,
    }


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _enqueue_raw(
    redis: ArqRedis, queue: str, function: str, payloads: Sequence[dict[str, Any]]
) -> list[str]:
    """Queue jobs the way another language would (SET + ZADD), in pipelines of 1,000."""
    ids = []
    now_ms = int(time.time() * 1000)
    for start in range(0, len(payloads), 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for offset, kwargs in enumerate(payloads[start : start + 1000]):
                job_id = f"bench-{RUN}-{function}-{start + offset}"
                job = serialize({"f": function, "a": [], "k": kwargs, "t": None, "et": now_ms})
                pipe.set(f"arq:job:{job_id}", job, px=3_600_000)
                pipe.zadd(queue, {job_id: now_ms})
                ids.append(job_id)
            await pipe.execute()
    return ids


async def _results(redis: ArqRedis, ids: Sequence[str]) -> list[dict[str, Any]]:
    records = []
    for start in range(0, len(ids), 1000):
        raw = await redis.mget([f"arq:result:{job_id}" for job_id in ids[start : start + 1000]])
        records += [deserialize(r) for r in raw if r is not None]
    return records


def _peak_rss_mb(process: subprocess.Popen[bytes]) -> float:
    """The worker's own peak RSS in MB (VmHWM of its address space), read until it exits.

    Not wait4's ru_maxrss: on Linux a child's ru_maxrss also counts the parent's memory at the
    fork before exec, so it reported this benchmark's own growing size for the later workers.
    """
    peak = 0.0
    while process.poll() is None:
        try:
            with open(f"/proc/{process.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) / 1024)
        except FileNotFoundError:  # exited between poll() and open()
            break
        time.sleep(0.02)
    return peak


def _run_worker(target: str, settings: Settings) -> float:
    """Run `arq target --burst` to the end; returns its peak RSS in MB."""
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a full pipe would stall the worker
        process = subprocess.Popen(
            [sys.executable, "-m", "arq", target, "--burst"],
            cwd=ROOT,
            env=_env(settings),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        peak = _peak_rss_mb(process)
        if process.wait() != 0:
            log.seek(0)
            raise RuntimeError(f"{target} exited {process.returncode}: {log.read().decode()[-2000:]}")
    return peak


async def arq_rate(
    redis: ArqRedis,
    settings: Settings,
    target: str,
    function: str,
    payloads: Sequence[dict[str, Any]],
    per_job: int = 1,
) -> tuple[float, float]:
    """(items/s from the first job's start to the last one's finish, peak worker RSS MB)."""
    ids = await _enqueue_raw(redis, settings.queue_name, function, payloads)
    rss = await asyncio.to_thread(_run_worker, target, settings)
    records = await _results(redis, ids)
    failed = [r for r in records if not r["s"]]
    if len(records) != len(ids) or failed:
        raise RuntimeError(
            f"{target}: {len(records)} results for {len(ids)} jobs, {len(failed)} failed: {failed[:1]}"
        )
    span = (max(r["ft"] for r in records) - min(r["st"] for r in records)) / 1000
    return len(ids) * per_job / span, rss


def _users(count: int, prefix: str) -> list[dict[str, Any]]:
    roles = ("admin", "member", "viewer")
    return [{"email": f"{prefix}{i}@example.com", "role": roles[i % 3]} for i in range(count)]


async def saq_rate(url: str, jobs: int) -> float:
    """Jobs/s of a SAQ worker doing one raw asyncpg insert per job."""
    name = f"bench-{RUN}-saq"
    queue = Queue.from_url(BENCH_REDIS_URL, name=name)
    try:
        for user in _users(jobs, "saq"):
            await queue.enqueue("insert_user", **user)
    finally:
        await queue.disconnect()
    done = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.saq_worker",
        BENCH_REDIS_URL,
        name,
        _asyncpg_dsn(url),
        str(jobs),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await done.communicate()
    if done.returncode != 0:
        raise RuntimeError(f"SAQ worker failed: {err.decode()[-2000:]}")
    return float(json.loads(out)["rate"])


async def asyncpg_single_rows(url: str, rows: int, concurrency: int) -> float:
    """Single-row insert transactions per second through a raw asyncpg pool."""
    pool = await asyncpg.create_pool(_asyncpg_dsn(url), min_size=concurrency, max_size=concurrency)
    users = _users(rows, "raw")
    gate = asyncio.Semaphore(concurrency * 5)

    async def insert(user: dict[str, Any]) -> None:
        async with gate, pool.acquire() as connection:
            await connection.execute(
                "INSERT INTO users (email, role) VALUES ($1, $2) ON CONFLICT (lower(email)) DO NOTHING",
                user["email"],
                user["role"],
            )

    try:
        started = time.perf_counter()
        await asyncio.gather(*(insert(user) for user in users))
        return rows / (time.perf_counter() - started)
    finally:
        await pool.close()


async def asyncpg_bulk(url: str, rows: int, batch: int) -> float:
    """Rows/s of raw `INSERT … SELECT unnest(…) ON CONFLICT DO NOTHING`, one transaction per batch."""
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    users = _users(rows, "rawbulk")
    try:
        started = time.perf_counter()
        for start in range(0, rows, batch):
            chunk = users[start : start + batch]
            await connection.execute(
                "INSERT INTO users (email, role) SELECT * FROM unnest($1::varchar[], $2::varchar[]) "
                "ON CONFLICT (lower(email)) DO NOTHING",
                [u["email"] for u in chunk],
                [u["role"] for u in chunk],
            )
        return rows / (time.perf_counter() - started)
    finally:
        await connection.close()


async def latency(url: str, seconds: float, rate: int = 100) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, worker peak RSS MB) of enqueue→committed at a fixed offered rate."""
    settings = _settings(url, "latency")
    redis = await connect_redis(settings)
    process = subprocess.Popen(  # noqa: ASYNC220 - started once; waited for in a thread
        [sys.executable, "-m", "arq", "worker.main.WorkerSettings"],
        cwd=ROOT,
        env=_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peak = asyncio.create_task(asyncio.to_thread(_peak_rss_mb, process))
    try:
        client = ProvisioningClient(redis, queue_name=settings.queue_name)
        warm = await client.provision_user(
            email="warm-up@example.com", role="member", job_id=f"bench-{RUN}-warm"
        )
        await warm.result(timeout=60, poll_delay=0.05)
        jobs = []
        interval, started = 1 / rate, time.perf_counter()
        for i in range(int(seconds * rate)):
            await asyncio.sleep(max(0.0, started + i * interval - time.perf_counter()))
            jobs.append(
                await client.provision_user(
                    email=f"lat{i}@example.com", role="member", job_id=f"bench-{RUN}-lat{i}"
                )
            )
        latencies = []
        for job in jobs:
            await job.result(timeout=60, poll_delay=0.05)
            info = await job.result_info()
            assert info is not None
            latencies.append((info.finish_time - info.enqueue_time).total_seconds() * 1000)
    finally:
        process.send_signal(signal.SIGTERM)
        rss = await peak
        await redis.aclose(close_connection_pool=True)
    return percentile(latencies, 50), percentile(latencies, 99), rss


async def _cleanup() -> None:
    redis = await connect_redis(_settings("postgresql+asyncpg://x@localhost/x", "cleanup"))
    try:
        keys = [key async for key in redis.scan_iter(match=f"*bench-{RUN}*", count=1000)]
        for start in range(0, len(keys), 1000):
            await redis.delete(*keys[start : start + 1000])
    finally:
        await redis.aclose(close_connection_pool=True)


async def measure(jobs: int, batch: int, bulk_batches: int, latency_seconds: float) -> list[Row]:
    """Every measurement, in one run on this machine.

    Bulk is measured over `bulk_batches` batches on both sides: with a handful of batches the
    figure is mostly first-use cost (statement preparation, new connections), and a short run
    varies a lot from run to run (docs/performance.md).
    """
    bulk_rows = batch * bulk_batches
    rows: list[Row] = []
    try:
        async with bench_database("noop") as url:
            settings = _settings(url, "noop")
            redis = await connect_redis(settings)
            noop, _ = await arq_rate(redis, settings, "bench.noop_worker.WorkerSettings", "noop", [{}] * jobs)
        async with bench_database("noop_uvloop") as url:
            settings = _settings(url, "noop_uvloop")
            noop_uvloop, _ = await arq_rate(
                redis, settings, "bench.noop_uvloop.WorkerSettings", "noop", [{}] * jobs
            )
        async with bench_database("noop_ours") as url:
            settings = _settings(url, "noop_ours")
            noop_ours, _ = await arq_rate(
                redis, settings, "bench.noop_ours.WorkerSettings", "noop", [{}] * jobs
            )
        async with bench_database("ours") as url:
            settings = _settings(url, "ours")
            ours, rss_burst = await arq_rate(
                redis, settings, "worker.main.WorkerSettings", "provision_user", _users(jobs, "ours")
            )
        async with bench_database("pgbouncer") as url, _through_pgbouncer(url) as pooled_url:
            settings = _settings(pooled_url, "pgbouncer").model_copy(update={"database_pooler": "pgbouncer"})
            pooled, _ = await arq_rate(
                redis, settings, "worker.main.WorkerSettings", "provision_user", _users(jobs, "pgbouncer")
            )
        async with bench_database("saq") as url:
            saq = await saq_rate(url, jobs)
        async with bench_database("raw") as url:
            raw = await asyncpg_single_rows(url, jobs, get_settings().db_pool_size)
        async with bench_database("bulk") as url:
            settings = _settings(url, "bulk")
            batches = [{"users": chunk} for chunk in _chunks(_users(bulk_rows, "bulk"), batch)]
            bulk, rss_bulk = await arq_rate(
                redis, settings, "worker.main.WorkerSettings", "provision_users", batches, batch
            )
        async with bench_database("rawbulk") as url:
            raw_bulk = await asyncpg_bulk(url, bulk_rows, batch)
        async with bench_database("latency") as url:
            p50, p99, rss_latency = await latency(url, latency_seconds)
        await redis.aclose(close_connection_pool=True)
    finally:
        await _cleanup()
    rows += [
        Row("stock ARQ no-op jobs (stock Worker class, same settings)", noop, "jobs/s", "1.00"),
        Row(
            "stock ARQ no-op jobs on uvloop (the event loop our worker runs on)",
            noop_uvloop,
            "jobs/s",
            f"{noop_uvloop / noop:.2f} of stock no-op",
        ),
        Row(
            "our worker (ProvisioningWorker), no-op jobs",
            noop_ours,
            "jobs/s",
            f"{noop_ours / noop:.2f} of stock no-op; {noop_ours / noop_uvloop:.2f} of stock on uvloop",
            "≥ 2.0 of stock no-op",
        ),
        Row(
            "provision_user, enqueue → committed row",
            ours,
            "jobs/s",
            f"{ours / noop:.2f} of stock no-op; {ours / noop_uvloop:.2f} of stock on uvloop; "
            f"{ours / saq:.2f} of SAQ",
            "≥ 1.2 of stock no-op; ≥ 1.5 of SAQ",
        ),
        Row(
            "provision_user through PgBouncer (transaction mode, 20 server connections)",
            pooled,
            "jobs/s",
            f"{pooled / ours:.2f} of direct",
        ),
        Row("SAQ + one raw asyncpg insert per job", saq, "jobs/s", f"{saq / noop:.2f} of no-op"),
        Row("raw asyncpg single-row transactions", raw, "rows/s", f"{raw / noop:.2f} of no-op"),
        Row(
            f"provision_users, {bulk_batches} batches of {batch}",
            bulk,
            "rows/s",
            f"{bulk / raw_bulk:.2f} of raw unnest",
            "≥ 0.75",
        ),
        Row(f"raw INSERT … unnest … ON CONFLICT, {batch} rows a transaction", raw_bulk, "rows/s", "1.00"),
        Row("latency p50 at 100 jobs/s offered", p50, "ms", "", "≤ 5"),
        Row("latency p99 at 100 jobs/s offered", p99, "ms", "", "≤ 10"),
        Row("peak worker RSS", max(rss_burst, rss_bulk, rss_latency), "MB", "", "≤ 150"),
    ]
    return rows


@asynccontextmanager
async def _through_pgbouncer(url: str) -> AsyncIterator[str]:
    """`url` by way of a private PgBouncer in transaction mode (tests/support/servers.py starts it)."""
    with tempfile.TemporaryDirectory() as logs, pgbouncer(Path(logs), pool_size=20) as port:
        yield make_url(url).set(port=port).render_as_string(hide_password=False)


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def report(rows: list[Row], jobs: int, batch: int, bulk_batches: int, latency_seconds: float) -> str:
    """The Markdown table with its header (date, machine, parameters, settings)."""
    settings = get_settings()
    lines = [
        f"## Throughput and latency ({now()}; {machine()})",
        "",
        f"{jobs} jobs per measurement, {bulk_batches} bulk batches of {batch}, "
        f"latency over {latency_seconds:g} s at 100 jobs/s; "
        f"worker settings MAX_JOBS={settings.max_jobs}, POLL_DELAY={settings.poll_delay}, "
        f"QUEUE_READ_LIMIT={settings.queue_read_limit or 'ARQ default'}, "
        f"DB_POOL_SIZE={settings.db_pool_size}.",
        "",
        "| measurement | value | unit | ratio | target |",
        "|---|---:|---|---|---|",
        *(f"| {r.name} | {r.value:,.1f} | {r.unit} | {r.ratio} | {r.target} |" for r in rows),
    ]
    return "\n".join(lines)


async def main(
    jobs: int, batch: int, latency_seconds: float, hashes: int, cheap: int, bulk_batches: int = 50
) -> str:
    """Run everything; return the Markdown report."""
    try:
        rows = await measure(jobs, batch, bulk_batches, latency_seconds)
        sections = [report(rows, jobs, batch, bulk_batches, latency_seconds)]
        if hashes:
            sections.append(await hashing.main(hashes, cheap))
    finally:
        await _cleanup()  # results written while a worker was shutting down included
    return "\n\n".join(sections)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--bulk-batches", type=int, default=50, help="batches in the bulk measurements")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--hashes", type=int, default=200, help="0 skips the hashing benchmark")
    parser.add_argument("--cheap", type=int, default=200)
    parser.add_argument("--write", action="store_true", help="also write bench/results.md")
    options = parser.parse_args()
    text = asyncio.run(
        main(
            options.jobs,
            options.batch,
            options.latency_seconds,
            options.hashes,
            options.cheap,
            options.bulk_batches,
        )
    )
    print(text)
    if options.write:
        RESULTS.write_text(
            "# Benchmark results\n\n"
            "Written by `make bench`; figures are from one machine: re-run to compare.\n\n" + text + "\n"
        )
