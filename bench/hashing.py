"""Password hashing in the worker: the pool's throughput, and deactivations while passwords hash.

python -m bench.hashing [--hashes 200] [--cheap 200] [--rounds 3]

A worker process runs as operators run it, with the default settings (and SEAL_KEYS) and each
variant's own, once per variant and round. In it:
1. `deactivate_user` jobs arrive one every 10 ms, alone (`--cheap` of them, after 50 not counted);
2. `--hashes` sealed-password `provision_user` jobs are queued at once (the burst), and deactivations
   arrive as in 1 while it runs;
3. another burst runs alone.
Latency is enqueue to commit (the job's finish); a burst's rate is its jobs over the time from the
first one's start to the last one's finish. The variants run interleaved, each round starting with
the next one, and the report gives medians with their ranges: figures on a shared 2-core machine
move a lot from run to run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from arq.jobs import Job, JobResult
from pydantic import SecretStr

from bench.common import BENCH_REDIS_URL, RUN, bench_database, machine, now, percentile
from worker.client import ProvisioningClient, connect_redis
from worker.jobs.sealing import new_seal_key
from worker.passwords.hashing import PasswordHashing
from worker.passwords.policy import PasswordPolicy
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
INTERVAL = 0.01
"""Seconds between two deactivations."""
WARM_UP = 50
"""Deactivations before the measured ones, not counted: without them the first jobs' statement
preparation and new connections made the p99 alone."""
LATENCY_TARGET = 3.0
"""Deactivation p99 during a burst, at most this many times its p99 alone (issue 20)."""
RATE_TARGET = 0.85
"""The default settings' hashing rate, at least this share of the worker's before issue 20."""

NEW = "the default (HASH_JOBS=2 per thread, HASH_NICE=19)"
BEFORE = "before issue 20 (HASH_JOBS=0, HASH_NICE=0)"
VARIANTS: dict[str, dict[str, str]] = {
    NEW: {},
    BEFORE: {"HASH_JOBS": "0", "HASH_NICE": "0"},
    "admission only (HASH_NICE=0)": {"HASH_NICE": "0"},
    "priority only (HASH_JOBS=0)": {"HASH_JOBS": "0"},
    "a core left free (HASH_THREADS=1, HASH_JOBS=0, HASH_NICE=0)": {
        "HASH_THREADS": "1",
        "HASH_JOBS": "0",
        "HASH_NICE": "0",
    },
}
"""The worker's environment on top of the defaults, by label; the first two give the verdicts."""


@dataclass(frozen=True)
class Figures:
    """One variant's run: deactivation latencies (ms) alone and during a burst; the bursts' rates."""

    alone_p50: float
    alone_p99: float
    burst_p50: float
    burst_p99: float
    rate_with_deactivations: float
    rate: float
    """The burst that ran alone: the worker's hashing throughput, in sealed-password jobs/s."""

    @property
    def ratio(self) -> float:
        """Deactivation p99 during the burst over its p99 alone."""
        return self.burst_p99 / self.alone_p99


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


async def _finished(jobs: list[Job]) -> list[JobResult]:
    infos = []
    for job in jobs:
        await job.result(timeout=300, poll_delay=0.05)
        info = await job.result_info()
        if info is None or not info.success:
            raise RuntimeError(f"job {job.job_id} failed: {info.result if info else 'no result'}")
        infos.append(info)
    return infos


async def _deactivations(client: ProvisioningClient, prefix: str, count: int) -> list[Job]:
    """Deactivate the users `prefix`0… `prefix`<count - 1>, one every INTERVAL seconds."""
    jobs = []
    started = time.perf_counter()
    for i in range(count):
        await asyncio.sleep(max(0.0, started + i * INTERVAL - time.perf_counter()))
        jobs.append(
            await client.deactivate_user(email=f"{prefix}{i}@example.com", job_id=f"bench-{RUN}-{prefix}{i}")
        )
    return jobs


async def _burst(client: ProvisioningClient, prefix: str, hashes: int) -> list[Job]:
    """Queue `hashes` sealed-password provisions at once (sealed first: sealing is the enqueuer's)."""
    sealed = [client.seal(f"password-{i}") for i in range(hashes)]
    return [
        await client.enqueue(
            "provision_user",
            email=f"{prefix}{i}@example.com",
            role="member",
            password_sealed=sealed[i],
            job_id=f"bench-{RUN}-{prefix}{i}",
        )
        for i in range(hashes)
    ]


def _latencies_ms(infos: list[JobResult]) -> list[float]:
    return [(info.finish_time - info.enqueue_time).total_seconds() * 1000 for info in infos]


def _rate(infos: list[JobResult]) -> float:
    span = max(info.finish_time for info in infos) - min(info.start_time for info in infos)
    return len(infos) / span.total_seconds()


def _start_worker(
    settings: Settings, seal_key: str, extra_env: dict[str, str], log: IO[bytes]
) -> subprocess.Popen[bytes]:
    """`arq worker.main.WorkerSettings`, as operators run it, on the bench's database and queue."""
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "REDIS_URL": settings.redis_url.get_secret_value(),
        "QUEUE_NAME": settings.queue_name,
        "SEAL_KEYS": seal_key,
        "LOG_FORMAT": "off",
        **extra_env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "arq", "worker.main.WorkerSettings"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )


async def deactivations_and_bursts(label: str, extra_env: dict[str, str], hashes: int, cheap: int) -> Figures:
    """One worker process with `extra_env` through the three steps of the module's docstring."""
    async with bench_database(label) as url:
        seal_key = new_seal_key()
        settings = Settings(
            _env_file=None, database_url=url, redis_url=BENCH_REDIS_URL, queue_name=f"bench-{RUN}:{label}"
        )
        redis = await connect_redis(settings)
        with tempfile.TemporaryFile() as log:  # a file, not a pipe: a full pipe would stall the worker
            process = _start_worker(settings, seal_key, extra_env, log)
            try:
                client = ProvisioningClient(redis, queue_name=settings.queue_name, seal_key=seal_key)
                users = [
                    {"email": f"{prefix}{i}@example.com", "role": "member"}
                    for prefix, count in (("w", WARM_UP), ("a", cheap), ("b", cheap))
                    for i in range(count)
                ]
                await _finished(
                    [  # at most BULK_MAX_BATCH users a job
                        await client.provision_users(
                            users[at : at + 1000], job_id=f"bench-{RUN}-{label}-u{at}"
                        )
                        for at in range(0, len(users), 1000)
                    ]
                )
                await _finished(await _deactivations(client, "w", WARM_UP))
                alone = await _finished(await _deactivations(client, "a", cheap))
                burst = await _burst(client, f"{label}-h", hashes)
                during = await _finished(await _deactivations(client, "b", cheap))
                with_deactivations = await _finished(burst)
                burst_alone = await _finished(await _burst(client, f"{label}-g", hashes))
            except Exception:
                log.seek(0)
                print(f"worker ({label}) stderr: {log.read().decode()[-2000:]}", file=sys.stderr)
                raise
            finally:
                process.send_signal(signal.SIGTERM)
                await asyncio.to_thread(process.wait)
                keys = [key async for key in redis.scan_iter(match=f"*bench-{RUN}*", count=1000)]
                if keys:
                    await redis.delete(*keys)
                await redis.aclose(close_connection_pool=True)
    a, b = _latencies_ms(alone), _latencies_ms(during)
    return Figures(
        percentile(a, 50),
        percentile(a, 99),
        percentile(b, 50),
        percentile(b, 99),
        _rate(with_deactivations),
        _rate(burst_alone),
    )


def _spread(values: list[float], unit: str = "") -> str:
    """The median, and the range when there is more than one value."""
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:.1f}{unit}"
    return f"{median:.1f}{unit} ({min(values):.1f} to {max(values):.1f})"


async def main(hashes: int, cheap: int, rounds: int = 3) -> str:
    """Run the measurements and return the report as Markdown."""
    policy = PasswordPolicy()
    cores = os.cpu_count() or 1
    one = await hashing_throughput(hashes, 1, policy)
    pool = await hashing_throughput(hashes, cores, policy)
    labels = list(VARIANTS)
    runs: dict[str, list[Figures]] = {label: [] for label in labels}
    for round_ in range(rounds):
        for number in range(len(labels)):  # each round starts one variant later: none always goes first
            label = labels[(round_ + number) % len(labels)]
            runs[label].append(
                await deactivations_and_bursts(f"h{round_}{number}", VARIANTS[label], hashes, cheap)
            )
    latency_ratio = statistics.median(run.ratio for run in runs[NEW])
    pairs = list(zip(runs[NEW], runs[BEFORE], strict=True))  # the same round's
    rate_ratios = [new.rate / before.rate for new, before in pairs]
    with_deactivations = [
        new.rate_with_deactivations / before.rate_with_deactivations for new, before in pairs
    ]
    latency_ok = "met" if latency_ratio <= LATENCY_TARGET else "MISSED"
    rate_ok = "met" if statistics.median(rate_ratios) >= RATE_TARGET else "MISSED"
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
        f"`deactivate_user`, enqueue → commit, one every {INTERVAL * 1000:.0f} ms ({cheap} of them), "
        f"alone and while a burst of {hashes} sealed-password `provision_user` jobs (queued at once) runs; "
        "the burst's rate with those deactivations and alone. A worker process with the default settings "
        f"and the variant's; {rounds} round(s), interleaved: medians (ranges).",
        "",
        "| worker | deactivations alone p50 / p99 ms | during the burst p50 / p99 ms | p99 during / alone "
        "| burst jobs/s, with deactivations | burst jobs/s, alone |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {label} | {statistics.median(r.alone_p50 for r in rs):.0f} / "
            f"{_spread([r.alone_p99 for r in rs])} | {statistics.median(r.burst_p50 for r in rs):.0f} / "
            f"{_spread([r.burst_p99 for r in rs])} | {_spread([r.ratio for r in rs], ' x')} | "
            f"{_spread([r.rate_with_deactivations for r in rs])} | {_spread([r.rate for r in rs])} |"
            for label, rs in runs.items()
        ),
        "",
        f"- Deactivation p99 during the burst / alone, default settings: {latency_ratio:.1f} x "
        f"(target ≤ {LATENCY_TARGET:g} x): {latency_ok}.",
        f"- Hashing rate (the burst alone), default settings / before issue 20, same round: "
        f"{_spread(rate_ratios)} (target ≥ {RATE_TARGET:.2f}): {rate_ok}. With the deactivations running: "
        f"{_spread(with_deactivations)}; before issue 20 they waited for the burst instead, so it had "
        "their CPU as well.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hashes", type=int, default=200)
    parser.add_argument("--cheap", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="runs of every variant, interleaved")
    options = parser.parse_args()
    print(asyncio.run(main(options.hashes, options.cheap, options.rounds)))
