"""A smoke run of `make bench` with tiny numbers, so the benchmark never rots (figures not asserted)."""

from __future__ import annotations

import pytest

from bench import run, tracing_parts
from worker import tracing

pytestmark = pytest.mark.slow


async def test_the_bench_runs_end_to_end_and_reports_every_row() -> None:
    text = await run.main(jobs=40, batch=10, latency_seconds=0.2, hashes=4, cheap=4, bulk_batches=3)
    for row in (
        "stock ARQ no-op jobs",
        "stock ARQ no-op jobs on uvloop",
        "our worker (ProvisioningWorker), no-op jobs",
        "provision_user, enqueue → committed row",
        "provision_user with tracing on",
        "1 trace in 10 sampled",
        "provision_user through PgBouncer",
        "SAQ + one raw asyncpg transaction per job",
        "raw asyncpg single-row transactions",
        "provision_users, 3 batches of 10",
        "raw INSERT … unnest",
        "raw SQL, same tables (state, users, audit)",
        "latency p50 at 100 jobs/s",
        "latency p99 at 100 jobs/s",
        "peak worker RSS",
        "pool of",
        "before issue 20 (HASH_JOBS=0, HASH_NICE=0)",
        "Deactivation p99 during the burst / alone",
    ):
        assert row in text
    assert "| 1 thread |" in text


def test_the_tracing_parts_are_each_measured() -> None:
    parts = dict(tracing_parts.measure(jobs=50, rounds=1))
    assert list(parts) == [
        "read the traceparent (tracing.extract)",
        "an empty span: start, make current, end, queue",
        "the job span as the worker makes it",
        "OTLP encoding of the empty span",
        "OTLP encoding of the job span",
        "the job span, its trace not sampled",
    ]
    assert all(micros > 0 for micros in parts.values())
    assert tracing.tracer() is None  # the process's tracing is left as it was found
