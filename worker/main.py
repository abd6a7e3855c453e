"""`arq worker.main.WorkerSettings`: what operators run.

ARQ's command line builds `arq.worker.Worker` and has no setting for another class, so importing
this module points that name at `ProvisioningWorker` (ARQ's worker, riding out Redis outages):
`arq worker.main.WorkerSettings` then runs it. Nothing else is rebound, and modules that only
need the wiring (`worker.runtime.wiring`) leave ARQ as it ships.
"""

from __future__ import annotations

import asyncio

import arq.worker

from worker.runtime.arq_worker import ProvisioningWorker
from worker.runtime.wiring import worker_settings
from worker.settings import get_settings

__all__ = ["WorkerSettings"]


def _use_uvloop() -> None:
    """Run the worker on uvloop when it is installed (the arq CLI creates its loop after this import)."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


_use_uvloop()
arq.worker.Worker = ProvisioningWorker  # type: ignore[misc]  # the arq CLI's create_worker() reads this name
# The arq CLI reads class attributes; reading the environment here is the only import-time work.
WorkerSettings = type("WorkerSettings", (), worker_settings(get_settings()))
