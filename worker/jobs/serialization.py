"""JSON (never pickle) for ARQ jobs and results, readable from any language."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime
from typing import Any
from uuid import UUID

from worker.jobs.errors import JobFailed

TRACE_KEY = "trace"
"""The envelope's trace context (docs/jobs.md, "Tracing"): `{"traceparent": …, "tracestate": …}`, W3C
Trace Context. A top-level key beside `f`, `a`, `k`, never an argument: ARQ's deserializer, and workers
that predate it, ignore unknown top-level keys, so a traced job still runs anywhere."""
TRACE_FIELDS = ("traceparent", "tracestate")
TRACE_FIELD_LIMIT = 512
"""Characters of a trace field kept (W3C caps `tracestate` at 512); a longer value is dropped."""

_outgoing_trace: ContextVar[dict[str, str] | None] = ContextVar("outgoing_trace", default=None)
_incoming_trace: ContextVar[dict[str, str] | None] = ContextVar("incoming_trace", default=None)


@contextmanager
def carrying_trace(carrier: Mapping[str, str] | None) -> Iterator[None]:
    """Jobs serialized inside the block carry `carrier` (W3C fields) under `TRACE_KEY`."""
    token = _outgoing_trace.set(trace_fields(carrier))
    try:
        yield
    finally:
        _outgoing_trace.reset(token)


def trace_fields(carrier: object) -> dict[str, str] | None:
    """The W3C fields of an envelope's (or a failure record's) trace context; None if it has none.

    Anything else, and a malformed value, is left out: a job never fails over its trace context."""
    if not isinstance(carrier, Mapping):
        return None
    fields = {
        name: value
        for name in TRACE_FIELDS
        if isinstance(value := carrier.get(name), str) and 0 < len(value) <= TRACE_FIELD_LIMIT
    }
    return fields if "traceparent" in fields else None


def incoming_trace() -> dict[str, str] | None:
    """The trace context of the job this task runs, as `deserialize_job` read it from its envelope."""
    return _incoming_trace.get()


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
    elif (trace := _outgoing_trace.get()) is not None:
        data = {**data, TRACE_KEY: trace}
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


def deserialize_job(raw: bytes) -> dict[str, Any]:
    """The worker's deserializer: `deserialize`, and the job's trace context kept for its task.

    ARQ deserializes a job in the task that then starts the job's function, which inherits the
    context (`incoming_trace`); a job without the key leaves it unset.
    """
    data = deserialize(raw)
    if TRACE_KEY in data:
        _incoming_trace.set(trace_fields(data[TRACE_KEY]))
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
