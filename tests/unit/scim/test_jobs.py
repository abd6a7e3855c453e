"""Job ids derived from requests, the answered counter, and what a failed job means."""

from __future__ import annotations

import pytest
from arq.connections import ArqRedis
from arq.jobs import JobResult

from tests.unit.conftest import FAKE_QUEUE
from worker.client import JobFailed, ProvisioningClient
from worker.scim.errors import ScimError
from worker.scim.jobs import (
    ANSWERED_MIN_TTL,
    RequestJobs,
    answered_key,
    canonical_body,
    derived_job_id,
    failure,
    request_digest,
)

TOKEN = b"\x01" * 32


def test_the_digest_depends_on_token_method_path_and_body_not_on_key_order() -> None:
    body = {"userName": "a@example.com", "active": True}
    same = request_digest(TOKEN, "post", "/scim/v2/Users", {"active": True, "userName": "a@example.com"})
    digest = request_digest(TOKEN, "POST", "/scim/v2/Users", body)
    assert digest == same
    assert len(digest) == 64
    assert digest != request_digest(b"\x02" * 32, "POST", "/scim/v2/Users", body)
    assert digest != request_digest(TOKEN, "PUT", "/scim/v2/Users", body)
    assert digest != request_digest(TOKEN, "POST", "/scim/v2/Users/1", body)
    assert digest != request_digest(TOKEN, "POST", "/scim/v2/Users", {**body, "active": False})


def test_the_digest_reveals_no_password() -> None:
    digest = request_digest(TOKEN, "POST", "/scim/v2/Users", {"password": "hunter2"})
    assert "hunter2" not in digest


def test_canonical_body() -> None:
    assert canonical_body(None) == ""
    assert canonical_body({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'


def test_job_ids_and_counter_names() -> None:
    assert derived_job_id("q", "abc", 2, "update_user") == "q:scim:abc:2:update_user"
    assert answered_key("q", "abc") == "q:scim:abc:answered"


async def test_a_retry_before_an_answer_derives_the_same_id_after_an_answer_a_new_one(
    fake_redis: ArqRedis,
) -> None:
    client = ProvisioningClient(fake_redis, queue_name=FAKE_QUEUE)
    submitted: list[tuple[str, int]] = []

    async def enqueue(job_id: str, as_of: int) -> object:
        submitted.append((job_id, as_of))
        return None

    first = RequestJobs(client, "d1", within=1.0)
    await first.submit("deactivate_user", enqueue)  # type: ignore[arg-type]
    retry = RequestJobs(client, "d1", within=1.0)
    await retry.submit("deactivate_user", enqueue)  # type: ignore[arg-type]
    assert submitted[0][0] == submitted[1][0] == f"{FAKE_QUEUE}:scim:d1:0:deactivate_user"
    assert submitted[1][1] > submitted[0][1]  # stamped at arrival (a joined job keeps its own stamp)

    await retry.answered()
    assert await fake_redis.get(answered_key(FAKE_QUEUE, "d1")) == b"1"
    assert await fake_redis.ttl(answered_key(FAKE_QUEUE, "d1")) >= ANSWERED_MIN_TTL - 1
    repeat = RequestJobs(client, "d1", within=1.0)
    assert await repeat.submit("deactivate_user", enqueue) == f"{FAKE_QUEUE}:scim:d1:1:deactivate_user"  # type: ignore[arg-type]


async def test_the_counter_outlives_stored_results(fake_redis: ArqRedis) -> None:
    client = ProvisioningClient(fake_redis, queue_name=FAKE_QUEUE)
    jobs = RequestJobs(client, "d2", within=1.0, keep_result=3600)
    assert jobs.answered_ttl > 3600


async def test_a_request_without_jobs_writes_no_counter(fake_redis: ArqRedis) -> None:
    jobs = RequestJobs(ProvisioningClient(fake_redis, queue_name=FAKE_QUEUE), "d3", within=1.0)
    await jobs.answered()
    await jobs.wait()
    assert await fake_redis.keys("*") == []


def result(error: BaseException) -> JobResult:
    return JobResult(
        function="update_user",
        args=(),
        kwargs={},
        job_try=1,
        enqueue_time=None,  # type: ignore[arg-type]
        score=None,
        success=False,
        result=error,
        start_time=None,  # type: ignore[arg-type]
        finish_time=None,  # type: ignore[arg-type]
        queue_name=FAKE_QUEUE,
        job_id="j",
    )


@pytest.mark.parametrize(
    ("error", "needs_user", "status", "scim_type"),
    [
        (JobFailed("InvalidPayload", "role: bad"), False, 400, "invalidValue"),
        (JobFailed("GaveUp", "update_user: gave up"), True, 404, None),
        (JobFailed("NotProvisionedYet", ""), True, 404, None),
        (JobFailed("GaveUp", "provision_user: gave up"), False, 500, None),
        (JobFailed("SealedPasswordRefused", "gAAAA-secret"), False, 500, None),
        (RuntimeError("boom"), False, 500, None),
    ],
)
def test_failed_jobs_map_to_statuses(
    error: BaseException, needs_user: bool, status: int, scim_type: str | None
) -> None:
    mapped = failure(result(error), needs_user=needs_user)
    assert isinstance(mapped, ScimError)
    assert (mapped.status, mapped.scim_type) == (status, scim_type)
    if status == 500:
        assert "secret" not in mapped.detail
        assert "boom" not in mapped.detail
