"""A command's position among the commands for one user: its stamp `(as_of, job_id)`.

`as_of` is an instant in integer microseconds since the epoch. The system of record may set it
(an RFC 3339 timestamp, or integer microseconds); otherwise it is the job's ARQ enqueue time.
The newest stamp wins, field by field, whatever order jobs run in (see docs/jobs.md).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Annotated, Any, NamedTuple

from pydantic import BeforeValidator, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from worker.jobs.errors import StampRefused

MICROS = 1_000_000
EARLIEST_AS_OF = 946_684_800 * MICROS
"""2000-01-01T00:00:00Z: anything smaller is no time in microseconds (a version number, or seconds
or milliseconds since the epoch), and cannot be compared with the enqueue times of other jobs."""


class Stamp(NamedTuple):
    """Where a command stands: newer `as_of` wins; the job id (byte order) breaks ties."""

    as_of: int
    job_id: str


def _as_micros(value: Any) -> Any:
    """RFC 3339 text or integer microseconds → integer microseconds; other values are left to `int`."""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("z", "Z"))
        except ValueError:
            raise PydanticCustomError(
                "as_of_format",
                "must be an RFC 3339 timestamp (e.g. 2026-11-26T09:30:00.123456Z) or integer microseconds "
                "since the epoch; version numbers cannot be compared with times",
            ) from None
        if moment.tzinfo is None:
            raise PydanticCustomError(
                "as_of_timezone", "an RFC 3339 timestamp needs its offset (Z or ±hh:mm)"
            )
        delta = moment - datetime.fromtimestamp(0, moment.tzinfo)
        return (delta.days * 86_400 + delta.seconds) * MICROS + delta.microseconds
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < EARLIEST_AS_OF:
        raise PydanticCustomError(
            "as_of_too_small",
            "must be microseconds since the epoch (or RFC 3339); this number is too small for a time "
            "after 2000: a version number, or seconds or milliseconds?",
        )
    return value


AsOf = Annotated[
    int,
    BeforeValidator(_as_micros),
    Field(ge=EARLIEST_AS_OF),
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string", "format": "date-time"}]}),
]
"""A job's optional `as_of`: RFC 3339 text or integer microseconds, stored as microseconds."""


def now_micros() -> int:
    """The wall clock in integer microseconds since the epoch."""
    return time.time_ns() // 1000


def check_stamp(as_of: int, *, now: int, max_skew: float, retention: float, function: str) -> None:
    """Refuse a stamp too far in the future (a bad clock) or older than tombstones are kept."""
    if as_of > now + int(max_skew * MICROS):
        ahead = (as_of - now) / MICROS
        raise StampRefused(
            f"{function}: as_of is {ahead:.0f}s ahead of this worker's clock, more than MAX_CLOCK_SKEW "
            f"({max_skew:g}s): fix the enqueuer's clock (NTP), then send the command again",
            function=function,
            as_of=as_of,
        )
    if as_of < now - int(retention * MICROS):
        age = (now - as_of) / MICROS
        raise StampRefused(
            f"{function}: as_of is {age:.0f}s old, older than TOMBSTONE_RETENTION ({retention:g}s), so it "
            "can no longer be ordered against deletes: send it again with a current as_of",
            function=function,
            as_of=as_of,
        )


class HybridClock:
    """Strictly increasing microsecond stamps: max(wall clock, last + 1).

    One client's commands keep their order even when several are sent within one microsecond,
    or when the wall clock steps back a little.
    """

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def now(self) -> int:
        """The next stamp: never smaller than the wall clock, always larger than the last one."""
        with self._lock:
            self._last = max(now_micros(), self._last + 1)
            return self._last


CLOCK = HybridClock()
"""The process's clock: every `ProvisioningClient` stamps from it, so their commands stay ordered."""
