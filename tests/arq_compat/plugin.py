"""Loaded before ARQ's tests (`-p tests.arq_compat.plugin`): they then build our worker.

Importing `worker.main` points `arq.worker.Worker` at `ProvisioningWorker`, exactly as
`arq worker.main.WorkerSettings` does, so `from arq.worker import Worker` in ARQ's tests gets it.
"""

from __future__ import annotations

import arq.worker

import worker.main  # noqa: F401 - imported for its one effect: arq.worker.Worker is ours
from worker.arq_worker import ProvisioningWorker

assert arq.worker.Worker is ProvisioningWorker
