"""ASGI middleware: observing every request (log line, metrics, X-Request-Id, a span when traced) and
the token check."""

from __future__ import annotations

import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker import tracing
from worker.scim import BASE_PATH
from worker.scim.auth import CHALLENGE, Tokens
from worker.scim.errors import ScimError, error_response
from worker.scim.logs import log_request
from worker.scim.metrics import record_request

TRACE_HEADERS = ("traceparent", "tracestate")
"""The W3C Trace Context headers a caller's trace continues through."""


class ObserveRequests:
    """Times each HTTP request, tags it with a request id, logs its line and records its metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; observe how it ended."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        started = time.perf_counter()
        status = 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        tracer = tracing.tracer()
        try:
            if tracer is None:
                await self.app(scope, receive, observed_send)
            else:
                # A server span, continuing the caller's trace if it sent one: the jobs a write
                # request enqueues are its children. The route, never the URL (a filter names emails).
                method = str(scope["method"])
                carrier = {name: value for name in TRACE_HEADERS if (value := _header(scope, name.encode()))}
                with tracing.span(
                    tracer,
                    method,
                    kind="server",
                    parent=tracing.extract(carrier),
                    attributes={"http.request.method": method},
                ) as span:
                    try:
                        await self.app(scope, receive, observed_send)
                    finally:
                        route = getattr(scope.get("route"), "path", None)
                        if route is not None:
                            span.update_name(f"{method} {route}")
                            span.set_attribute("http.route", route)
                        span.set_attribute("http.response.status_code", status)
                        if status >= 500:
                            tracing.mark_failed(span, str(status))
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = str(scope["method"])
            record_request(method, route, status, seconds)
            log_request(
                request_id=request_id,
                method=method,
                path=str(scope["path"]),
                route=route,
                status=status,
                seconds=seconds,
            )


class RequireToken:
    """Under /scim/v2, a request needs an accepted bearer token: 401 with WWW-Authenticate otherwise.

    The matching token's digest goes to `request.state.token_digest` (it keys the job ids).
    """

    def __init__(self, app: ASGIApp, tokens: Tokens) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the token, then pass the request on."""
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or not (path == BASE_PATH or path.startswith(BASE_PATH + "/")):
            await self.app(scope, receive, send)
            return
        digest = self.tokens.match(_header(scope, b"authorization"))
        if digest is None:
            response = error_response(
                ScimError(
                    401,
                    "a valid bearer token is required (Authorization: Bearer …)",
                    headers={"WWW-Authenticate": CHALLENGE},
                )
            )
            await response(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        state["token_digest"] = digest
        await self.app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None
