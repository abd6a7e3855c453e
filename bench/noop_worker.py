"""`arq bench.noop_worker.WorkerSettings`: stock ARQ with the worker's own settings, doing nothing.

The queue's ceiling: the same serializer, concurrency, polling and read limit as the real worker.
"""

from __future__ import annotations

from typing import Any

from worker.settings import get_settings
from worker.wiring import worker_settings  # not worker.main: that runs our worker class


async def noop(ctx: dict[str, Any], **kwargs: Any) -> None:
    """Do nothing."""


_settings = worker_settings(get_settings())
WorkerSettings = type(
    "WorkerSettings",
    (),
    {**_settings, "functions": [noop], "on_startup": None, "on_shutdown": None, "ctx": {}},
)
