"""Request bodies: at most SCIM_MAX_BODY bytes (413 beyond), and JSON (400 invalidSyntax if not)."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from worker.scim.errors import ScimError, bad_request


def too_large(limit: int) -> ScimError:
    """A 413 naming the limit."""
    return ScimError(413, f"the request body is larger than {limit} bytes (SCIM_MAX_BODY)")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, read no further than `limit` bytes: its Content-Length is checked first."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise bad_request("invalidSyntax", "Content-Length is not a number")
        if int(declared) > limit:
            raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON; 400 invalidSyntax when it is empty or not JSON."""
    raw = await read_body(request, limit)
    if not raw.strip():
        raise bad_request("invalidSyntax", "the request has no body: send a JSON document")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        where = (
            f" at line {error.lineno} column {error.colno}" if isinstance(error, json.JSONDecodeError) else ""
        )
        raise bad_request("invalidSyntax", f"the request body is not valid JSON{where}") from None
