"""Run-scoped ids: every Redis key and database a test run makes carries this run's id."""

from __future__ import annotations

import uuid

RUN_ID = uuid.uuid4().hex[:10]


def new_id(kind: str = "job") -> str:
    """An id unique to this test run, so that cleanup can find every key the run made."""
    return f"t{RUN_ID}-{kind}-{uuid.uuid4().hex[:12]}"
