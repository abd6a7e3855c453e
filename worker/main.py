"""`arq worker.main.WorkerSettings`: what operators run.

ARQ's command line has no setting for a worker class: `arq.worker.create_worker` builds whatever the
module attribute `arq.worker.Worker` holds when it runs, and `get_kwargs` passes it only the settings
that this class's signature names. Importing this module therefore rebinds `arq.worker.Worker` to
`ProvisioningWorker` (whose signature is `Worker.__init__`'s), and `arq worker.main.WorkerSettings`
runs ours. The rebinding holds for the whole process and for later `from arq.worker import Worker`,
not for names bound before it (`arq.Worker`). Modules that only need the wiring (`worker.wiring`)
leave ARQ as it ships.
"""

from __future__ import annotations

import asyncio

import arq.worker

from worker.runtime.arq_worker import ProvisioningWorker
from worker.settings import get_settings
from worker.wiring import worker_settings

__all__ = ["WorkerSettings"]


def _use_uvloop() -> None:
    """Run the worker on uvloop when it is installed (the arq CLI creates its loop after this import)."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


_use_uvloop()
arq.worker.Worker = ProvisioningWorker  # type: ignore[misc]  # read by create_worker() when the CLI calls it
# The arq CLI reads class attributes, so the settings are read from the environment at import, too.
WorkerSettings = type("WorkerSettings", (), worker_settings(get_settings()))
