"""One log line per request: request id, method, path, route, status, duration. Never a body, a
query string or a header value (tokens, filters naming people and passwords stay out)."""

from __future__ import annotations

import logging

logger = logging.getLogger("worker.scim")


def log_request(*, request_id: str, method: str, path: str, route: str, status: int, seconds: float) -> None:
    """Write the request's line (warning level for 5xx)."""
    event: dict[str, object] = {
        "event": "scim_request",
        "request_id": request_id,
        "method": method,
        "path": path,
        "route": route,
        "status": status,
        "duration_ms": round(seconds * 1000, 2),
    }
    level = logging.WARNING if status >= 500 else logging.INFO
    logger.log(level, "%s %s %s", method, path, status, extra={"event": event})
