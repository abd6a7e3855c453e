"""`python -m worker health`: a live worker on the queue, the database at head, and the SCIM service."""

from __future__ import annotations

import argparse
import json
import time

from worker.cli.scim_health import check_scim, default_url
from worker.client import connect_redis
from worker.runtime.health import check_health
from worker.settings import get_settings


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
        live = ", ".join(
            f"{w['id']} (seen {time.time() - float(w['seen']):.1f} s ago)" for w in report.workers
        )
        print(
            f"queue {settings.queue_name}: {len(report.workers)} live worker(s){': ' + live if live else ''}"
        )
        print(f"database: {report.database}")
        if scim is not None:
            print(f"scim {scim.url}: {scim.detail}")
        print("healthy" if ok else "UNHEALTHY")
    return 0 if ok else 1
