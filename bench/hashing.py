"""Password hashing in the worker: pool vs one thread, and cheap-job latency while hashing.

python -m bench.hashing [--hashes 200] [--cheap 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from arq.worker import Worker
from pydantic import SecretStr

from bench.common import BENCH_REDIS_URL, RUN, bench_database, machine, now, percentile
from worker.client import ProvisioningClient, connect_redis
from worker.jobs.sealing import new_seal_key
from worker.passwords.hashing import PasswordHashing
from worker.passwords.policy import PasswordPolicy
from worker.settings import Settings
from worker.wiring import startup, worker_settings


async def hashing_throughput(hashes: int, threads: int, policy: PasswordPolicy) -> float:
    """Hashes per second with `threads` hashing threads."""
    hashing = PasswordHashing(policy, threads=threads)
    try:
        await hashing.hash(SecretStr("warm-up"))
        started = time.perf_counter()
        await asyncio.gather(*(hashing.hash(SecretStr(f"password-{i}")) for i in range(hashes)))
        return hashes / (time.perf_counter() - started)
    finally:
        hashing.close()


class InlineHashing(PasswordHashing):
    """Hashing on the event loop itself: what the pool exists to avoid (for comparison only)."""

    async def hash(self, password: SecretStr) -> str:
        from worker.passwords.policy import hash_password

        return hash_password(password.get_secret_value(), self.policy)


async def cheap_job_latencies(
    url: str, *, hashing_jobs: int, cheap_jobs: int, inline: bool, threads: int | None = None
) -> list[float]:
    """Enqueue→done seconds of cheap jobs sent every 10 ms while `hashing_jobs` sealed jobs run."""
    key = new_seal_key()
    settings = Settings(
        _env_file=None,
        database_url=url,
        redis_url=BENCH_REDIS_URL,
        queue_name=f"bench-{RUN}:hashing",
        seal_keys=key,
        log_format="off",  # in-process: leave the host's logging alone
        max_jobs=hashing_jobs + 50,
        poll_delay=0.005,
        db_pool_size=20,
        hash_threads=threads,
    )

    async def bench_startup(ctx: dict[str, Any]) -> None:
        await startup(ctx)  # type: ignore[arg-type]
        if inline:
            ctx["hashing"] = InlineHashing(settings.password_policy, threads=1)

    redis = await connect_redis(settings)
    worker = Worker(**{**worker_settings(settings), "on_startup": bench_startup, "handle_signals": False})
    runner = asyncio.create_task(worker.async_run())
    try:
        client = ProvisioningClient(redis, queue_name=settings.queue_name, seal_key=key)
        await asyncio.sleep(0.5)
        hashing = [
            await client.provision_user(
                email=f"hash{i}@example.com", role="member", password=f"pw-{i}", job_id=f"bench-{RUN}-h{i}"
            )
            for i in range(hashing_jobs)
        ]
        cheap = []
        for i in range(cheap_jobs):
            cheap.append(
                await client.provision_user(
                    email=f"cheap{i}@example.com", role="viewer", job_id=f"bench-{RUN}-c{i}"
                )
            )
            await asyncio.sleep(0.01)
        latencies = []
        for job in cheap:
            await job.result(timeout=120, poll_delay=0.05)
            info = await job.result_info()
            assert info is not None
            latencies.append((info.finish_time - info.enqueue_time).total_seconds())
        for job in hashing:  # closing the worker would cancel the ones still hashing
            await job.result(timeout=120, poll_delay=0.05)
        return latencies
    finally:
        runner.cancel()
        await worker.close()
        keys = [k async for k in redis.scan_iter(match=f"*bench-{RUN}*", count=1000)]
        if keys:
            await redis.delete(*keys)
        await redis.aclose(close_connection_pool=True)


async def main(hashes: int, cheap: int) -> str:
    """Run the measurements and return the report as Markdown."""
    policy = PasswordPolicy()
    cores = os.cpu_count() or 1
    one = await hashing_throughput(hashes, 1, policy)
    pool = await hashing_throughput(hashes, cores, policy)
    rows: list[tuple[str, float, float]] = []
    cases: list[tuple[str, dict[str, Any]]] = [
        ("no hashing", {"hashing_jobs": 0, "inline": False}),
        (f"hashing on the pool ({cores} threads, the default)", {"hashing_jobs": hashes, "inline": False}),
    ]
    if cores > 1:
        cases.append(
            (
                f"hashing on the pool (HASH_THREADS={cores - 1})",
                {"hashing_jobs": hashes, "inline": False, "threads": cores - 1},
            )
        )
    cases.append(("hashing on the event loop (no pool)", {"hashing_jobs": hashes, "inline": True}))
    for label, kwargs in cases:
        async with bench_database(str(len(rows))) as url:
            lat = await cheap_job_latencies(url, cheap_jobs=cheap, **kwargs)
        rows.append((label, percentile(lat, 50) * 1000, percentile(lat, 99) * 1000))
    lines = [
        f"## Password hashing ({now()}; {machine()})",
        "",
        f"argon2id m={policy.memory_kib} KiB, t={policy.time_cost}, p={policy.parallelism}; {hashes} hashes.",
        "",
        "| hashing | hashes/s | ratio |",
        "|---|---:|---:|",
        f"| 1 thread | {one:.1f} | 1.00 |",
        f"| pool of {cores} threads | {pool:.1f} | {pool / one:.2f} |",
        "",
        f"Cheap jobs (no password; one every 10 ms, {cheap} of them) "
        f"while {hashes} sealed-password jobs run:",
        "",
        "| while | cheap p50 ms | cheap p99 ms |",
        "|---|---:|---:|",
        *(f"| {label} | {p50:.1f} | {p99:.1f} |" for label, p50, p99 in rows),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hashes", type=int, default=200)
    parser.add_argument("--cheap", type=int, default=200)
    options = parser.parse_args()
    print(asyncio.run(main(options.hashes, options.cheap)))
