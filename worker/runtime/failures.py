"""Failed jobs kept for inspection and replay longer than ARQ keeps results (FAILED_JOB_RETENTION)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from arq.connections import ArqRedis
from pydantic_core import PydanticCustomError

from worker.jobs.emails import email_key

SECRET_FIELDS = frozenset({"password_hash", "password_sealed"})
ARGUMENTS_LIMIT = 64 * 1024
"""Bytes of (JSON) arguments a failure record keeps; larger ones are kept as their size and digest."""
MESSAGE_LIMIT = 4096
"""Characters of an error message a failure record keeps."""


def _without_secrets(arguments: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """The arguments minus any password field (batch entries included), and whether any was dropped."""
    dropped = False
    kept: dict[str, Any] = {}
    for name, value in arguments.items():
        if name in SECRET_FIELDS:
            dropped = True
        elif name == "users" and isinstance(value, list):
            entries = []
            for entry in value:
                if isinstance(entry, dict) and SECRET_FIELDS & entry.keys():
                    dropped = True
                    entry = {k: v for k, v in entry.items() if k not in SECRET_FIELDS}
                entries.append(entry)
            kept[name] = entries
        else:
            kept[name] = value
    return kept, dropped


def failed_index(queue_name: str) -> str:
    """Sorted set of failed job ids, scored by failure time."""
    return f"{queue_name}:failed"


def failed_key(queue_name: str, job_id: str) -> str:
    """The record of one failed job."""
    return f"{queue_name}:failed:{job_id}"


async def record_failure(
    redis: ArqRedis,
    queue_name: str,
    *,
    job_id: str,
    function: str,
    job_try: int,
    error_type: str,
    message: str,
    arguments: Mapping[str, Any],
    retention: int,
    security: bool = False,
    trace: Mapping[str, str] | None = None,
) -> None:
    """Keep a failed job for `retention` seconds: its arguments (for `retry`) minus passwords.

    `security` marks a deactivation or deletion that failed: `failed` lists those first. `trace`
    (W3C fields: the failed try's span, or the trace its envelope carried) is what `retry` links to.
    """
    now = time.time()
    kept, dropped = _without_secrets(arguments)
    record: dict[str, Any] = {
        "job_id": job_id,
        "function": function,
        "try": job_try,
        "error_type": error_type,
        "message": message if len(message) <= MESSAGE_LIMIT else message[:MESSAGE_LIMIT] + "…",
        "failed_at": now,
        "arguments": kept,
        "password_dropped": dropped,
        "security": security,
    }
    if trace:
        record["trace"] = dict(trace)
    encoded = json.dumps(kept, default=str).encode()
    if len(encoded) > ARGUMENTS_LIMIT:
        # A malformed job can be megabytes: keep what identifies it, not the job itself.
        record["arguments"] = {}
        record["arguments_omitted"] = {"bytes": len(encoded), "sha256": hashlib.sha256(encoded).hexdigest()}
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(failed_key(queue_name, job_id), json.dumps(record, default=str), ex=retention)
        pipe.zadd(failed_index(queue_name), {job_id: now})
        pipe.zremrangebyscore(failed_index(queue_name), "-inf", now - retention)
        await pipe.execute()


async def failed_jobs(redis: ArqRedis, queue_name: str, limit: int = 50) -> list[dict[str, Any]]:
    """The newest failed jobs, security events (failed deactivations and deletions) first."""
    ids: Sequence[bytes] = await redis.zrevrange(failed_index(queue_name), 0, limit - 1)
    if not ids:
        return []
    raw = await redis.mget([failed_key(queue_name, job_id.decode()) for job_id in ids])
    records = [json.loads(r) for r in raw if r is not None]
    return sorted(records, key=lambda record: not record.get("security", False))  # stable: newest first


async def failed_job(redis: ArqRedis, queue_name: str, job_id: str) -> dict[str, Any] | None:
    """One failed job's record, if still kept."""
    raw = await redis.get(failed_key(queue_name, job_id))
    return None if raw is None else dict(json.loads(raw))


def _same_person(recorded: str, key: str) -> bool:
    """Whether an email kept in a failure record names the person with identity key `key`."""
    try:
        return email_key(recorded) == key
    except PydanticCustomError:
        return recorded.lower() == key  # a payload that never validated: as it was sent


async def erase_failures(redis: ArqRedis, queue_name: str, email: str) -> int:
    """Delete the failed-job records of single-user jobs for the person `email` names; how many."""
    person = email_key(email)
    ids: Sequence[bytes] = await redis.zrange(failed_index(queue_name), 0, -1)
    if not ids:
        return 0
    keys = [failed_key(queue_name, job_id.decode()) for job_id in ids]
    doomed = [
        (job_id, key)
        for job_id, key, raw in zip(ids, keys, await redis.mget(keys), strict=True)
        if raw is not None
        and _same_person(str(json.loads(raw).get("arguments", {}).get("email", "")), person)
    ]
    if doomed:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.delete(*(key for _, key in doomed))
            pipe.zrem(failed_index(queue_name), *(job_id for job_id, _ in doomed))
            await pipe.execute()
    return len(doomed)
