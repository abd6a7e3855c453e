"""JSON (never pickle) for ARQ jobs and results, readable from any language."""

from __future__ import annotations

import enum
import json
from datetime import date, datetime
from typing import Any
from uuid import UUID

from worker.jobs.errors import JobFailed


def describe_exception(exc: BaseException) -> dict[str, str]:
    """`{"type": …, "message": …}` for a failure, including the cause ARQ wraps around ours."""
    message = str(exc)
    cause = exc.__cause__
    if cause is not None and str(cause):
        message = f"{message}: {type(cause).__name__}: {cause}" if message else str(cause)
    return {"type": type(exc).__name__, "message": message}


def _encode(value: Any) -> Any:
    if isinstance(value, BaseException):
        return {"error": describe_exception(value)}
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def serialize(data: dict[str, Any]) -> bytes:
    """Encode a job or a result as compact JSON; a result keeps none of the job's arguments."""
    if "s" in data:
        # Results outlive jobs (KEEP_RESULT) and are read by enqueuers: arguments may be secrets.
        data = {**data, "a": [], "k": {}}
    # ASCII escapes: any string that came in (lone surrogates included) goes back out as valid JSON.
    return json.dumps(
        data, default=_encode, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def deserialize(raw: bytes) -> dict[str, Any]:
    """Decode a job or a result; a failed result's error becomes a `JobFailed` exception."""
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except ValueError as decode_error:  # JSONDecodeError, UnicodeDecodeError, NaN/Infinity
        raise ValueError(
            f"not JSON ({type(decode_error).__name__}: {decode_error}): "
            "jobs must be JSON objects as docs/jobs.md describes; pickle is refused"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    if "f" in data and "s" not in data:
        _normalise_job(data)
    result = data.get("r")
    if data.get("s") is False and isinstance(result, dict) and set(result) == {"error"}:
        error = result["error"]
        if isinstance(error, dict):
            data["r"] = JobFailed(str(error.get("type", "Error")), str(error.get("message", "")))
    return data


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _normalise_job(job: dict[str, Any]) -> None:
    """Fill the optional envelope fields and reject a job ARQ would misread, naming the field."""
    job.setdefault("a", [])
    job.setdefault("k", {})
    job.setdefault("t", None)
    if not isinstance(job["f"], str):
        raise ValueError('job field "f" (function name) must be a string')
    if not isinstance(job["a"], list):
        raise ValueError('job field "a" (positional arguments) must be a list')
    if not isinstance(job["k"], dict):
        raise ValueError('job field "k" (keyword arguments) must be an object')
    if job["t"] is not None and (isinstance(job["t"], bool) or not isinstance(job["t"], int)):
        raise ValueError('job field "t" (try number) must be an integer or null')
    if isinstance(job.get("et"), bool) or not isinstance(job.get("et"), int):
        raise ValueError('job field "et" (enqueue time, ms since the epoch) must be an integer')
