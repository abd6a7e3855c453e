"""`arq bench.noop_uvloop.WorkerSettings`: stock ARQ's no-op worker (`bench.noop_worker`) on uvloop,
the event loop our worker runs on: the like-for-like baseline for the queue path alone."""

from __future__ import annotations

import asyncio

import uvloop

from bench.noop_worker import WorkerSettings as StockSettings

asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())  # the arq CLI creates its loop after this import

WorkerSettings = type(
    "WorkerSettings", (), {k: v for k, v in vars(StockSettings).items() if not k.startswith("__")}
)
