"""Responses in SCIM's media type, `application/scim+json`."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

SCIM_MEDIA_TYPE = "application/scim+json"


class ScimResponse(Response):
    """A JSON document in the SCIM media type."""

    media_type = SCIM_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        """Compact UTF-8 JSON."""
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def scim_response(content: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> ScimResponse:
    """`content` as `application/scim+json` with `status`."""
    return ScimResponse(content, status_code=status, headers=headers)
