"""Loaded first (`-p tests.integration.runtime.arq_compat.plugin`): ARQ's tests then build our worker.

Importing `worker.main` points `arq.worker.Worker` at `ProvisioningWorker`, exactly as
`arq worker.main.WorkerSettings` does, so `from arq.worker import Worker` in ARQ's tests gets it.
"""

from __future__ import annotations

import os

import arq.worker
import pytest
import redis

import worker.main  # noqa: F401 - imported for its one effect: arq.worker.Worker is ours
from worker.runtime.arq_worker import ProvisioningWorker

assert arq.worker.Worker is ProvisioningWorker


@pytest.fixture(autouse=True)
def _forget_scripts() -> None:
    """Each test starts with an empty script cache, as on a fresh server.

    The suite's FLUSHALL empties the keys but not the scripts our worker loads, and ARQ logs the
    server's memory at start-up: one test asserts that its job's result (42) is not in the log, and
    a grown "mem_usage=1.42M" would fail it for no fault of the worker.
    """
    client = redis.Redis(port=int(os.environ["ARQ_COMPAT_REDIS_PORT"]))
    try:
        client.script_flush()
    finally:
        client.close()
