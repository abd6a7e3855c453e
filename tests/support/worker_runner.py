"""Run a real ARQ worker, built exactly as `WorkerSettings` builds it, in burst mode."""

from __future__ import annotations

from typing import Any

from arq.worker import Worker

from worker.runtime.arq_worker import ProvisioningWorker
from worker.settings import Settings
from worker.wiring import worker_settings


async def run_burst(settings: Settings, **overrides: Any) -> Worker:
    """Start a worker on `settings`' queue, run every queued job, then shut it down."""
    options = {**worker_settings(settings), "burst": True, "handle_signals": False, "poll_delay": 0.02}
    worker: Worker = ProvisioningWorker(**{**options, **overrides})
    try:
        await worker.main()
    finally:
        await worker.close()
    return worker
