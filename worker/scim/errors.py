"""SCIM errors (RFC 7644 §3.12): what a request got wrong, answered in SCIM's error schema."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from scim2_models import Error, SCIMException

from worker.scim.responses import scim_response

_VALID_SCIM_TYPES = frozenset(
    {
        "invalidFilter",
        "tooMany",
        "uniqueness",
        "mutability",
        "invalidSyntax",
        "invalidPath",
        "noTarget",
        "invalidValue",
        "invalidVers",
        "sensitive",
    }
)


class ScimError(Exception):
    """An answer other than success: an HTTP status, an optional `scimType`, a detail saying why."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        scim_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scim_type = scim_type
        self.headers = headers or {}


def bad_request(scim_type: str, detail: str) -> ScimError:
    """A 400 with its `scimType`."""
    return ScimError(400, detail, scim_type=scim_type)


def not_found(detail: str = "no such resource") -> ScimError:
    """A 404."""
    return ScimError(404, detail)


def from_scim_exception(error: SCIMException) -> ScimError:
    """Our error for one of scim2-models' exceptions."""
    return ScimError(error.status, error.detail, scim_type=error.scim_type or None)


def from_validation_error(error: ValidationError) -> ScimError:
    """A 400 for a body scim2-models refused: its `scimType` when it names one, else invalidValue.

    The message names the attribute and the problem, never the value sent (it could be a password).
    """
    problems = error.errors(include_input=False, include_url=False)
    scim_type = "invalidValue"
    for problem in problems:
        context: dict[str, Any] = dict(problem.get("ctx") or {})
        found = context.get("scim_type")
        if isinstance(found, str) and found in _VALID_SCIM_TYPES:
            scim_type = found
            break
    details = []
    for problem in problems[:5]:
        where = ".".join(str(part) for part in problem["loc"])
        details.append(f"{where}: {problem['msg']}" if where else problem["msg"])
    return bad_request(scim_type, "; ".join(details) or "the request body is not valid")


def error_response(error: ScimError) -> Any:
    """The SCIM error document for `error`, with its headers."""
    body = Error(status=error.status, scim_type=error.scim_type, detail=error.detail)
    return scim_response(body.model_dump(), status=error.status, headers=error.headers)
