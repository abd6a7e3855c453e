"""`python -m worker health`: a live worker on the queue, the database at head, and the SCIM service."""

from __future__ import annotations

import argparse
import json
import time

from worker.cli.scim_health import ScimHealth, check_scim, default_url
from worker.cli.tables import Column, Output, short_time
from worker.client import connect_redis
from worker.runtime.health import HealthReport, check_health
from worker.settings import get_settings

WORKER_COLUMNS = (Column("worker"), Column("last seen"), Column("started"))


async def health_command(options: argparse.Namespace) -> int:
    settings = get_settings()
    scim = None
    if options.scim is not None or options.scim_only:
        scim = await check_scim(options.scim or default_url(settings))
    if options.scim_only:
        assert scim is not None
        if options.json:
            print(json.dumps({"ok": scim.ok, "scim": scim.as_dict()}, sort_keys=True))
        else:
            print(f"scim {scim.url}: {scim.detail}")
            print("healthy" if scim.ok else "UNHEALTHY")
        return 0 if scim.ok else 1
    redis = await connect_redis(settings)
    try:
        report = await check_health(redis, settings)
    finally:
        await redis.aclose(close_connection_pool=True)
    ok = report.ok and (scim is None or scim.ok)
    if options.json:
        data = report.as_dict()
        if scim is not None:
            data.update(ok=ok, scim=scim.as_dict())
        print(json.dumps(data, sort_keys=True))
    else:
        show_health(settings.queue_name, report, scim, Output.stdout(table=options.table))
    return 0 if ok else 1


def show_health(queue: str, report: HealthReport, scim: ScimHealth | None, out: Output) -> None:
    """`health`: the live workers, the database, the SCIM service if asked, then the verdict."""
    now = time.time()
    rows = [
        [worker["id"], f"{now - float(worker['seen']):.1f} s ago", short_time(worker["started"])]
        for worker in report.workers
    ]
    out.table(f"live workers on queue {queue}", WORKER_COLUMNS, rows)
    out.line(f"database: {report.database}")
    if scim is not None:
        out.line(f"scim {scim.url}: {scim.detail}")
    out.line("healthy" if report.ok and (scim is None or scim.ok) else "UNHEALTHY", bold=True)
