"""The backoff, and what a task makes of a transient failure (PostgreSQL refusing, faked by the tier's
conftest; tests/integration/runtime/test_refused_connections.py refuses for real)."""

from __future__ import annotations

import pytest
from arq.worker import Retry

from tests.support.contexts import job_context
from worker import tasks
from worker.jobs.errors import GaveUp
from worker.retrying import backoff_delay


@pytest.mark.parametrize("job_try", range(1, 12))
def test_backoff_grows_exponentially_within_its_cap_with_jitter(job_try: int) -> None:
    delays = [backoff_delay(job_try, base=1.0, cap=60.0) for _ in range(200)]
    ceiling = min(60.0, 2.0 ** (job_try - 1))
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 100  # jittered, so retries of many jobs do not land together


async def test_a_task_turns_a_transient_failure_into_a_deferred_retry() -> None:
    url = "postgresql+asyncpg://postgres@127.0.0.1:1/x"
    async with job_context(url, job_try=3, retry_base_delay=2.0, retry_max_delay=60.0) as ctx:
        with pytest.raises(Retry) as retry:
            await tasks.provision_user(ctx, email="r@example.com", role="member")
    assert 4000 <= (retry.value.defer_score or 0) <= 8000  # try 3: 2 s * 2**2, jittered, in ms
    assert isinstance(retry.value.__cause__, OSError)


async def test_the_last_try_fails_with_the_reason_instead_of_retrying() -> None:
    url = "postgresql+asyncpg://postgres:pw-hidden@127.0.0.1:1/x"
    async with job_context(url, job_try=10, max_tries=10) as ctx:
        with pytest.raises(
            GaveUp, match=r"gave up after 10 tries; last error ConnectionRefusedError"
        ) as gave_up:
            await tasks.provision_user(ctx, email="r@example.com", role="member")
    assert "pw-hidden" not in str(gave_up.value)
