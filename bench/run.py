"""`make bench`: the worker against the queue's ceiling, a peer (SAQ), and the database's ceilings.

    python -m bench.run [--jobs 5000] [--batch 1000] [--bulk-batches 50] [--latency-seconds 10]
                        [--hashes 200] [--cheap 200] [--only GROUP,…] [--write]

Every measurement uses its own database and Redis keys (named after this run) and removes them.
Worker processes run exactly as operators run them (`arq … --burst`); rates are taken from the
jobs' own start and finish times, so process start-up is not counted.

`--only` runs some groups of rows (noop, ours, tracing, pgbouncer, saq, raw, bulk, latency, scim; `--hashes 0`
skips the hashing tables), e.g. `python -m bench.run --only bulk --hashes 0`; a ratio whose other
side was not measured is left out, and `--write` is refused (bench/results.md holds whole runs).
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
import uuid
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
from bench import scim as scim_bench
from bench.common import BENCH_REDIS_URL, RUN, bench_database, machine, now, percentile
from bench.saq_worker import INSERT_USER
from tests.support.otlp import otlp_receiver
from tests.support.servers import pgbouncer
from worker.client import ProvisioningClient, connect_redis
from worker.jobs.identity import KEY_VERSION, identity_key
from worker.jobs.serialization import TRACE_KEY, deserialize, serialize
from worker.jobs.stamps import now_micros
from worker.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.md"
SCIM_CONCURRENCY = 64
"""SCIM requests in flight for the creates/s figure (an identity provider's sync runs far fewer)."""


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
    redis: ArqRedis,
    queue: str,
    function: str,
    payloads: Sequence[dict[str, Any]],
    *,
    traced: bool = False,
    sample_every: int = 1,
) -> list[str]:
    """Queue jobs the way another language would (SET + ZADD), in pipelines of 1,000; `traced`: each
    job carries a trace context of its own, as a traced enqueuer's would, sampled for one job in
    `sample_every` (the enqueuer's sampling decision, which the worker's parent-based sampler follows)."""
    ids = []
    now_ms = int(time.time() * 1000)
    for start in range(0, len(payloads), 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for offset, kwargs in enumerate(payloads[start : start + 1000]):
                job_id = f"bench-{RUN}-{function}-{start + offset}"
                envelope: dict[str, Any] = {"f": function, "a": [], "k": kwargs, "t": None, "et": now_ms}
                if traced:
                    flags = "01" if (start + offset) % sample_every == 0 else "00"
                    parent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-{flags}"
                    envelope[TRACE_KEY] = {"traceparent": parent}
                job = serialize(envelope)
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


def _run_worker(target: str, settings: Settings, extra_env: dict[str, str] | None = None) -> float:
    """Run `arq target --burst` to the end; returns its peak RSS in MB."""
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a full pipe would stall the worker
        process = subprocess.Popen(
            [sys.executable, "-m", "arq", target, "--burst"],
            cwd=ROOT,
            env={**_env(settings), **(extra_env or {})},
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
    *,
    trace_to: str | None = None,
    sample_every: int = 1,
) -> tuple[float, float]:
    """(items/s from the first job's start to the last one's finish, peak worker RSS MB).

    `trace_to`: an OTLP/HTTP endpoint; the jobs carry trace contexts (one in `sample_every` sampled)
    and the worker exports to it.
    """
    ids = await _enqueue_raw(
        redis, settings.queue_name, function, payloads, traced=trace_to is not None, sample_every=sample_every
    )
    extra_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": trace_to} if trace_to is not None else None
    rss = await asyncio.to_thread(_run_worker, target, settings, extra_env)
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
    """Jobs/s of a SAQ worker doing one raw asyncpg transaction per job (bench/saq_worker.py)."""
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
    """Single-row transactions per second through a raw asyncpg pool: the least a hand-written job does.

    Each is the SAQ job's statement (bench/saq_worker.py): the identity key, then the person's
    `user_states` row (key and key version only) and the `users` row in one statement, `ON
    CONFLICT (key) DO NOTHING`; no stamps, no audit row.
    """
    pool = await asyncpg.create_pool(_asyncpg_dsn(url), min_size=concurrency, max_size=concurrency)
    users = _users(rows, "raw")
    gate = asyncio.Semaphore(concurrency * 5)

    async def insert(user: dict[str, Any]) -> None:
        key = identity_key(user["email"])
        async with gate, pool.acquire() as connection:
            await connection.execute(INSERT_USER, key, KEY_VERSION, user["email"], user["role"])

    try:
        started = time.perf_counter()
        await asyncio.gather(*(insert(user) for user in users))
        return rows / (time.perf_counter() - started)
    finally:
        await pool.close()


# The least a hand-written bulk job does: a key row and a user row per person, nothing else.
_MINIMAL_STATES = """
    INSERT INTO user_states (key, key_version)
    SELECT k, $2::smallint FROM unnest($1::text[]) AS k
    ON CONFLICT (key) DO NOTHING
"""
_MINIMAL_USERS = """
    INSERT INTO users (key, email, role)
    SELECT * FROM unnest($1::text[], $2::varchar[], $3::varchar[])
    ON CONFLICT (key) DO NOTHING
"""

# What provision_users writes for a person it creates, written by hand for rows known to be new:
# the state row with the batch's stamp on the fields a provision names (provisioned, role, active;
# no password), the user, and its audit row (status created, nothing before). No lock statement,
# no comparison of stamps, no erased stamps, no window: only the writes.
_SAME_STATES = """
    INSERT INTO user_states (key, key_version, provisioned_as_of, provisioned_job_id,
                             role_as_of, role_job_id, active_as_of, active_job_id)
    SELECT k, $2::smallint, $3::bigint, $4::text, $3, $4, $3, $4 FROM unnest($1::text[]) AS k
    ON CONFLICT (key) DO NOTHING
"""
_SAME_USERS = """
    INSERT INTO users (key, email, role, is_active, hashed_password)
    SELECT k, e, r, true, NULL FROM unnest($1::text[], $2::varchar[], $3::varchar[]) AS u(k, e, r)
    ON CONFLICT (key) DO NOTHING
"""
_SAME_CHANGES = """
    INSERT INTO user_changes (email_key, job_id, email, user_id, function, as_of, status, was_email,
                              was_provisioned, provisioned, was_role, role, was_active, is_active,
                              password_changed)
    SELECT c.k, $4::text, c.e, u.id, 'provision_users', $5::bigint, 'created',
           NULL, false, true, NULL, c.r, NULL, true, false
    FROM unnest($1::text[], $2::varchar[], $3::varchar[]) AS c(k, e, r)
    JOIN users u ON u.key = c.k
"""


async def asyncpg_bulk(url: str, rows: int, batch: int, *, same_tables: bool) -> float:
    """Rows/s of raw `INSERT … SELECT … FROM unnest(…)` statements, one transaction per batch.

    `same_tables`: the state row with its stamps, the user and its audit row, as provision_users
    writes them (`_SAME_*`); otherwise only a key row and a user row (`_MINIMAL_*`). Either way
    the identity keys are computed in the timed loop, as the worker computes them in its job.
    """
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    users = _users(rows, "rawsame" if same_tables else "rawbulk")
    try:
        started = time.perf_counter()
        for number, start in enumerate(range(0, rows, batch)):
            chunk = users[start : start + batch]
            keys = [identity_key(u["email"]) for u in chunk]
            emails, roles = [u["email"] for u in chunk], [u["role"] for u in chunk]
            async with connection.transaction():
                if same_tables:
                    as_of, job_id = now_micros(), f"bench-{RUN}-rawsame-{number}"
                    await connection.execute(_SAME_STATES, keys, KEY_VERSION, as_of, job_id)
                    await connection.execute(_SAME_USERS, keys, emails, roles)
                    await connection.execute(_SAME_CHANGES, keys, emails, roles, job_id, as_of)
                else:
                    await connection.execute(_MINIMAL_STATES, keys, KEY_VERSION)
                    await connection.execute(_MINIMAL_USERS, keys, emails, roles)
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


GROUPS = ("noop", "ours", "tracing", "pgbouncer", "saq", "raw", "bulk", "latency", "scim")
"""The groups of rows `--only` chooses from, in the order they run."""


async def measure(
    jobs: int, batch: int, bulk_batches: int, latency_seconds: float, only: Sequence[str] = GROUPS
) -> list[Row]:
    """Every measurement (or the groups in `only`), in one run on this machine.

    Bulk is measured over `bulk_batches` batches on every side: with a handful of batches the
    figure is mostly first-use cost (statement preparation, new connections), and a short run
    varies a lot from run to run (docs/performance.md).
    """
    bulk_rows = batch * bulk_batches
    f: dict[str, float] = {}  # the figures measured, by name
    try:
        redis = await connect_redis(_settings("postgresql+asyncpg://x@localhost/x", "enqueue"))
        try:
            if "noop" in only:
                async with bench_database("noop") as url:
                    settings = _settings(url, "noop")
                    f["noop"], _ = await arq_rate(
                        redis, settings, "bench.noop_worker.WorkerSettings", "noop", [{}] * jobs
                    )
                async with bench_database("noop_uvloop") as url:
                    settings = _settings(url, "noop_uvloop")
                    f["noop_uvloop"], _ = await arq_rate(
                        redis, settings, "bench.noop_uvloop.WorkerSettings", "noop", [{}] * jobs
                    )
                async with bench_database("noop_ours") as url:
                    settings = _settings(url, "noop_ours")
                    f["noop_ours"], _ = await arq_rate(
                        redis, settings, "bench.noop_ours.WorkerSettings", "noop", [{}] * jobs
                    )
            if "ours" in only:
                async with bench_database("ours") as url:
                    settings = _settings(url, "ours")
                    f["ours"], f["rss_burst"] = await arq_rate(
                        redis, settings, "worker.main.WorkerSettings", "provision_user", _users(jobs, "ours")
                    )
            if "tracing" in only:
                # Tracing on as operators turn it on (an OTLP endpoint: OTLP/HTTP, BatchSpanProcessor's
                # defaults), to a sink in this process that answers as a collector does.
                # Every job's trace sampled, then one in ten (an enqueuer that samples 10 %).
                for label, sample_every in (("traced", 1), ("traced_tenth", 10)):
                    async with bench_database(label) as url:
                        with otlp_receiver(keep=False) as sink:
                            f[label], _ = await arq_rate(
                                redis,
                                _settings(url, label),
                                "worker.main.WorkerSettings",
                                "provision_user",
                                _users(jobs, label),
                                trace_to=sink.endpoint,
                                sample_every=sample_every,
                            )
            if "pgbouncer" in only:
                async with bench_database("pgbouncer") as url, _through_pgbouncer(url) as pooled_url:
                    settings = _settings(pooled_url, "pgbouncer").model_copy(
                        update={"database_pooler": "pgbouncer"}
                    )
                    f["pooled"], _ = await arq_rate(
                        redis,
                        settings,
                        "worker.main.WorkerSettings",
                        "provision_user",
                        _users(jobs, "pgbouncer"),
                    )
            if "saq" in only:
                async with bench_database("saq") as url:
                    f["saq"] = await saq_rate(url, jobs)
            if "raw" in only:
                async with bench_database("raw") as url:
                    f["raw"] = await asyncpg_single_rows(url, jobs, get_settings().db_pool_size)
            if "bulk" in only:
                async with bench_database("bulk") as url:
                    settings = _settings(url, "bulk")
                    batches = [{"users": chunk} for chunk in _chunks(_users(bulk_rows, "bulk"), batch)]
                    f["bulk"], f["rss_bulk"] = await arq_rate(
                        redis, settings, "worker.main.WorkerSettings", "provision_users", batches, batch
                    )
                async with bench_database("rawsame") as url:
                    f["raw_same"] = await asyncpg_bulk(url, bulk_rows, batch, same_tables=True)
                async with bench_database("rawbulk") as url:
                    f["raw_bulk"] = await asyncpg_bulk(url, bulk_rows, batch, same_tables=False)
            if "latency" in only:
                async with bench_database("latency") as url:
                    f["p50"], f["p99"], f["rss_latency"] = await latency(url, latency_seconds)
            if "scim" in only:
                async with bench_database("scim") as url:
                    f["scim_rate"] = await scim_bench.creates_per_second(url, jobs, SCIM_CONCURRENCY)
                async with bench_database("scim_latency") as url:
                    f["scim_p50"], f["scim_p99"] = await scim_bench.latency(url, latency_seconds)
        finally:
            await redis.aclose(close_connection_pool=True)
    finally:
        await _cleanup()
    return _rows(f, batch, bulk_batches)


def _rows(f: dict[str, float], batch: int, bulk_batches: int) -> list[Row]:
    """The report's rows for the figures in `f`; a ratio is left out when either side is missing."""
    rows: list[Row] = []

    def add(key: str, name: str, unit: str, ratio: str = "", target: str = "") -> None:
        if key in f:
            rows.append(Row(name, f[key], unit, ratio, target))

    def of(name: str, base: str, label: str) -> str:
        return f"{f[name] / f[base]:.2f} of {label}" if name in f and base in f else ""

    def ratios(*parts: str) -> str:
        return "; ".join(part for part in parts if part)

    least = "the least a hand-written job does: key row + user row, no stamps, no audit"
    add("noop", "stock ARQ no-op jobs (stock Worker class, same settings)", "jobs/s", "1.00")
    add(
        "noop_uvloop",
        "stock ARQ no-op jobs on uvloop (the event loop our worker runs on)",
        "jobs/s",
        of("noop_uvloop", "noop", "stock no-op"),
    )
    add(
        "noop_ours",
        "our worker (ProvisioningWorker), no-op jobs",
        "jobs/s",
        ratios(of("noop_ours", "noop", "stock no-op"), of("noop_ours", "noop_uvloop", "stock on uvloop")),
        "≥ 2.0 of stock no-op",
    )
    add(
        "ours",
        "provision_user, enqueue → committed row",
        "jobs/s",
        ratios(
            of("ours", "noop", "stock no-op"),
            of("ours", "noop_uvloop", "stock on uvloop"),
            of("ours", "saq", "SAQ"),
        ),
        "≥ 1.2 of stock no-op; ≥ 1.5 of SAQ",
    )
    add(
        "traced",
        "provision_user with tracing on (OTLP/HTTP, batched, to a local sink)",
        "jobs/s",
        of("traced", "ours", "tracing off"),
        "≥ 0.90 of tracing off",
    )
    add(
        "traced_tenth",
        "provision_user with tracing on, 1 trace in 10 sampled by the enqueuer",
        "jobs/s",
        of("traced_tenth", "ours", "tracing off"),
    )
    add(
        "pooled",
        "provision_user through PgBouncer (transaction mode, 20 server connections)",
        "jobs/s",
        of("pooled", "ours", "direct"),
    )
    add("saq", f"SAQ + one raw asyncpg transaction per job ({least})", "jobs/s", of("saq", "noop", "no-op"))
    add("raw", f"raw asyncpg single-row transactions ({least})", "rows/s", of("raw", "noop", "no-op"))
    add(
        "bulk",
        f"provision_users, {bulk_batches} batches of {batch}",
        "rows/s",
        ratios(of("bulk", "raw_same", "hand-written"), of("bulk", "raw_bulk", "minimal raw unnest")),
        "≥ 0.85 of hand-written",
    )
    add(
        "raw_same",
        f"raw SQL, same tables (state, users, audit), {batch} rows a transaction",
        "rows/s",
        "1.00",
    )
    add(
        "raw_bulk",
        f"raw INSERT … unnest … ON CONFLICT ({least}), {batch} rows a transaction",
        "rows/s",
        of("raw_bulk", "raw_same", "same tables"),
    )
    add("p50", "latency p50 at 100 jobs/s offered", "ms", "", "≤ 5")
    add("p99", "latency p99 at 100 jobs/s offered", "ms", "", "≤ 10")
    add(
        "scim_rate",
        f"SCIM POST /Users → 201, one worker, {SCIM_CONCURRENCY} requests in flight",
        "requests/s",
        of("scim_rate", "ours", "provision_user jobs"),
        "≥ 300",
    )
    add("scim_p50", "SCIM POST /Users → 201 latency p50 at 50 requests/s offered", "ms", "", "")
    add("scim_p99", "SCIM POST /Users → 201 latency p99 at 50 requests/s offered", "ms", "", "≤ 50")
    peaks = [f[name] for name in ("rss_burst", "rss_bulk", "rss_latency") if name in f]
    if peaks:
        rows.append(Row("peak worker RSS", max(peaks), "MB", "", "≤ 150"))
    return rows


@asynccontextmanager
async def _through_pgbouncer(url: str) -> AsyncIterator[str]:
    """`url` by way of a private PgBouncer in transaction mode (tests/support/servers.py starts it)."""
    with tempfile.TemporaryDirectory() as logs, pgbouncer(Path(logs), pool_size=20) as port:
        yield make_url(url).set(port=port).render_as_string(hide_password=False)


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _groups(value: str) -> tuple[str, ...]:
    """`--only`: comma-separated group names, kept in the order they run."""
    named = {name.strip() for name in value.split(",") if name.strip()}
    unknown = named - set(GROUPS)
    if unknown or not named:
        raise argparse.ArgumentTypeError(f"groups are {', '.join(GROUPS)}; not {', '.join(sorted(unknown))}")
    return tuple(group for group in GROUPS if group in named)


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
    jobs: int,
    batch: int,
    latency_seconds: float,
    hashes: int,
    cheap: int,
    bulk_batches: int = 50,
    only: Sequence[str] = GROUPS,
) -> str:
    """Run everything (or the groups in `only`); return the Markdown report."""
    try:
        rows = await measure(jobs, batch, bulk_batches, latency_seconds, only)
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
    parser.add_argument(
        "--only",
        type=_groups,
        default=GROUPS,
        metavar="GROUP,…",
        help=f"run only these groups of rows, comma-separated, of: {', '.join(GROUPS)} (no --write)",
    )
    parser.add_argument("--write", action="store_true", help="also write bench/results.md")
    options = parser.parse_args()
    if options.write and options.only != GROUPS:
        parser.error("--write takes a whole run (bench/results.md): leave out --only")
    text = asyncio.run(
        main(
            options.jobs,
            options.batch,
            options.latency_seconds,
            options.hashes,
            options.cheap,
            options.bulk_batches,
            options.only,
        )
    )
    print(text)
    if options.write:
        RESULTS.write_text(
            "# Benchmark results\n\n"
            "Written by `make bench`; figures are from one machine: re-run to compare.\n\n" + text + "\n"
        )
