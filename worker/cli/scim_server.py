"""`python -m worker scim`: the SCIM 2.0 service on uvicorn, after checks that name what is wrong.

Exit status: 0 after SIGTERM/SIGINT (in-flight requests finish first), 2 for a configuration that
cannot serve (no SCIM_TOKENS), 1 when the database is unreachable or not at the code's head, or
the server could not start (port taken, the app's start-up failed).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine
from typing import Any

import uvicorn
from sqlalchemy.exc import SQLAlchemyError

from worker.db.migrations import schema_state
from worker.db.session import create_engine
from worker.retrying import cannot_reach
from worker.runtime import metrics
from worker.runtime.logs import configure_logging
from worker.settings import Settings, get_settings

logger = logging.getLogger(__name__)

EXIT_CONFIGURATION = 2
"""No way to serve with this configuration: fix the environment, restarting will not help."""


def command(options: argparse.Namespace) -> Coroutine[Any, Any, int]:
    """The `scim` subcommand: picks uvloop (when installed) before the CLI creates its loop."""
    _use_uvloop()
    return serve(get_settings())


def _use_uvloop() -> None:
    # Called before asyncio.run() builds the loop; this process runs nothing but the server.
    try:
        import uvloop
    except ImportError:  # pragma: no cover - the `fast` extra is optional
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def preflight(settings: Settings) -> tuple[int, str] | None:
    """(exit status, the one line saying why) if the service cannot serve; None when it can."""
    if not settings.scim_token_list:
        return EXIT_CONFIGURATION, (
            "error: SCIM_TOKENS is not set: give the bearer token(s) identity providers send, "
            "comma-separated (README, SCIM); refusing to start without one"
        )
    engine = create_engine(settings)
    try:
        state = await schema_state(engine)
    except (OSError, SQLAlchemyError) as error:
        unreachable = cannot_reach("PostgreSQL", settings.database_url_masked, error)
        return 1, f"error: {unreachable}: start it, or fix DATABASE_URL"
    finally:
        await engine.dispose()
    if not state.at_head:
        return 1, f"error: {state.describe()}"
    return None


async def serve(settings: Settings) -> int:
    """Check, then serve until SIGTERM/SIGINT; returns the exit status."""
    refused = await preflight(settings)
    if refused is not None:
        status, line = refused
        print(line, file=sys.stderr)
        return status
    configure_logging(settings.log_format)
    from worker.scim.app import create_app  # the app's imports are only paid by this command

    config = uvicorn.Config(
        create_app(settings),
        host=settings.scim_host,
        port=settings.scim_port,
        log_config=None,  # logging is ours (configure_logging); uvicorn's loggers propagate to it
        access_log=False,  # the app logs one line per request, without query strings or headers
        lifespan="on",
        server_header=False,
        # proxy_headers is on; FORWARDED_ALLOW_IPS (uvicorn's variable) names the trusted proxies.
    )
    server = uvicorn.Server(config)
    metrics_server = metrics.serve(settings.metrics_port) if settings.metrics_port is not None else None
    # uvicorn restores the handlers it found and re-raises the signal that stopped it: let that
    # re-raise land on a handler that does nothing, so a clean shutdown exits 0, not by the signal.
    previous = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        await server.serve()
    except SystemExit:  # uvicorn's way out when it cannot bind its port or the app's start-up failed
        server.started = False
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if metrics_server is not None:
            metrics_server.shutdown()
    if not server.started:
        print(
            f"error: the SCIM service did not start on {settings.scim_host}:{settings.scim_port} "
            "(see the lines above)",
            file=sys.stderr,
        )
        return 1
    return 0


def _ignore(signum: int, frame: object) -> None:
    """A signal re-raised after uvicorn's graceful shutdown: nothing left to do."""
