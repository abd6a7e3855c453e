"""`arq bench.noop_ours.WorkerSettings`: our worker class (as `arq worker.main.WorkerSettings` runs it)
with the stock no-op settings of `bench.noop_worker`: what our job path costs by itself."""

from __future__ import annotations

import worker.main  # noqa: F401 - points arq.worker.Worker at ProvisioningWorker, as in production
from bench.noop_worker import WorkerSettings as StockSettings

WorkerSettings = type(
    "WorkerSettings", (), {k: v for k, v in vars(StockSettings).items() if not k.startswith("__")}
)
