"""End to end: a real ARQ worker consumes jobs from real Redis and writes to real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from arq.connections import ArqRedis
from arq.jobs import Job
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.ids import new_id
from tests.support.worker_runner import run_burst
from worker.client import ProvisioningClient
from worker.db.session import SessionFactory
from worker.jobs.errors import JobFailed
from worker.jobs.sealing import new_seal_key
from worker.jobs.stamps import now_micros
from worker.passwords.policy import hash_password
from worker.repositories.user import UserCommand
from worker.runtime.group_commit import CommandGroups
from worker.services.outcome import UserOutcome
from worker.settings import Settings

pytestmark = pytest.mark.usefixtures("committing_sessions")

# The enqueue script documented in docs/jobs.md, verbatim.
ENQUEUE_LUA = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
return 1
"""


async def _users(engine: AsyncEngine) -> list[tuple[object, ...]]:
    async with engine.connect() as conn:
        result = await conn.execute(
            text("SELECT email, role, is_active, hashed_password FROM users ORDER BY email")
        )
        return [tuple(row) for row in result]


async def test_jobs_from_the_python_client_are_applied(
    redis: ArqRedis, settings: Settings, engine: AsyncEngine
) -> None:
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    password_hash = hash_password("a long passphrase")
    jobs = [
        await client.provision_user(email="ada@example.com", role="admin", job_id=new_id()),
        await client.provision_user(
            email="bob@example.com", role="viewer", password_hash=password_hash, job_id=new_id()
        ),
        await client.provision_user(email="cy@example.com", role="member", job_id=new_id()),
    ]
    worker = await run_burst(settings)
    assert (worker.jobs_complete, worker.jobs_failed) == (3, 0)

    follow_ups = [
        await client.set_user_role(email="BOB@example.com", role="member", job_id=new_id()),
        await client.deactivate_user(email="cy@example.com", job_id=new_id()),
        await client.delete_user(email="ada@example.com", job_id=new_id()),
        await client.delete_user(email="nobody@example.com", job_id=new_id()),
    ]
    await run_burst(settings)

    results = [await job.result(timeout=5) for job in jobs + follow_ups]
    assert [r["status"] for r in results] == [
        "created",
        "created",
        "created",
        "updated",
        "updated",
        "deleted",
        "absent",
    ]
    assert results[1] == {
        "status": "created",
        "email": "bob@example.com",
        "user_id": results[1]["user_id"],
        "role": "viewer",
        "is_active": True,
    }
    assert await _users(engine) == [
        ("bob@example.com", "member", True, password_hash),
        ("cy@example.com", "member", False, None),
    ]


async def test_the_same_job_run_twice_reports_unchanged(redis: ArqRedis, settings: Settings) -> None:
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    first = await client.provision_user(email="twice@example.com", role="member", job_id=new_id())
    await run_burst(settings)
    again = await client.provision_user(email="twice@example.com", role="member", job_id=new_id())
    await run_burst(settings)
    assert (await first.result(timeout=5))["status"] == "created"
    assert (await again.result(timeout=5))["status"] == "unchanged"


@pytest.mark.parametrize("script", ["eval", "multi"])
async def test_a_hand_written_json_job_from_raw_redis_commands(
    redis: ArqRedis, settings: Settings, engine: AsyncEngine, script: str
) -> None:
    """Exactly what docs/jobs.md tells an enqueuer in another language to send."""
    job_id = new_id()
    now_ms = int(time.time() * 1000)
    payload = (
        '{"f": "provision_user", "a": [], "k": {"email": "raw@example.com", "role": "viewer"}, '
        f'"t": null, "et": {now_ms}}}'
    )
    if script == "eval":
        added = await redis.execute_command(  # type: ignore[no-untyped-call]  # unannotated in redis-py
            "EVAL",
            ENQUEUE_LUA,
            3,
            f"arq:job:{job_id}",
            f"arq:result:{job_id}",
            settings.queue_name,
            payload,
            86_400_000,
            now_ms,
            job_id,
        )
        assert added == 1
    else:
        async with redis.pipeline(transaction=True) as multi:  # MULTI … EXEC on one connection
            multi.execute_command("SET", f"arq:job:{job_id}", payload, "PX", 86_400_000, "NX")
            multi.execute_command("ZADD", settings.queue_name, "NX", now_ms, job_id)
            await multi.execute()

    await run_burst(settings)

    raw_result = await redis.get(f"arq:result:{job_id}")
    assert raw_result is not None
    stored = json.loads(raw_result)
    assert stored["s"] is True
    assert stored["r"]["status"] == "created"
    assert await _users(engine) == [("raw@example.com", "viewer", True, None)]


BAD_PAYLOADS: dict[str, tuple[str, list[object], dict[str, Any], str]] = {
    "invalid email": (
        "provision_user",
        [],
        {"email": "not-an-email", "role": "admin"},
        "email: value is not a valid email",
    ),
    "unknown role": (
        "provision_user",
        [],
        {"email": "a@example.com", "role": "owner"},
        "role: Input should be 'admin', 'member' or 'viewer'",
    ),
    "wrong type": (
        "provision_user",
        [],
        {"email": 42, "role": "admin"},
        "email: Input should be a valid string",
    ),
    "missing field": ("set_user_role", [], {"email": "a@example.com"}, "role: Field required"),
    "unknown field": (
        "delete_user",
        [],
        {"email": "a@example.com", "hard": True},
        "hard: Extra inputs are not permitted",
    ),
    "plaintext password": (
        "provision_user",
        [],
        {"email": "a@example.com", "role": "admin", "password_hash": "hunter2hunter2"},
        "password_hash: must be an argon2id PHC string",
    ),
    "version number as as_of": (
        "deactivate_user",
        [],
        {"email": "a@example.com", "as_of": 7},
        "as_of: must be microseconds since the epoch",
    ),
    "positional args": ("provision_user", ["a@example.com", "admin"], {}, "takes keyword arguments only"),
    "unknown function": ("drop_all_users", [], {}, "function 'drop_all_users' not found"),
}


@pytest.mark.parametrize("case", BAD_PAYLOADS, ids=list(BAD_PAYLOADS))
async def test_bad_payloads_fail_once_clearly_and_write_nothing(
    redis: ArqRedis, settings: Settings, engine: AsyncEngine, case: str
) -> None:
    function, args, kwargs, message = BAD_PAYLOADS[case]
    bad = await redis.enqueue_job(
        function, *args, _job_id=new_id(), _queue_name=settings.queue_name, **kwargs
    )
    good = await ProvisioningClient(redis, queue_name=settings.queue_name).provision_user(
        email="good@example.com", role="member", job_id=new_id()
    )
    assert bad is not None

    worker = await run_burst(settings)

    assert (worker.jobs_complete, worker.jobs_failed, worker.jobs_retried) == (1, 1, 0)
    info = await bad.result_info()
    assert info is not None
    assert (info.success, info.job_try) == (False, 1)
    with pytest.raises(JobFailed, match=message):
        await bad.result(timeout=5)
    assert "hunter2" not in str(info.result)
    assert (await good.result(timeout=5))["status"] == "created"
    assert await _users(engine) == [("good@example.com", "member", True, None)]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x80\x04\x95 not json at all", "unable to deserialize job"),
        (b'["a", "list"]', "expected a JSON object"),
        (
            b'{"f": "provision_user", "a": [], "k": ["x"], "et": 1}',
            'job field "k" (keyword arguments) must be an object',
        ),
    ],
)
async def test_undecodable_jobs_fail_with_a_clear_message(
    redis: ArqRedis, settings: Settings, engine: AsyncEngine, raw: bytes, message: str
) -> None:
    job_id = new_id()
    await redis.set(f"arq:job:{job_id}", raw, px=60_000)
    await redis.zadd(settings.queue_name, {job_id: int(time.time() * 1000)})

    worker = await run_burst(settings)

    assert (worker.jobs_failed, worker.jobs_retried) == (1, 0)
    job = Job(job_id, redis, _queue_name=settings.queue_name, _deserializer=redis.job_deserializer)
    with pytest.raises(JobFailed, match="DeserializationError") as failure:
        await job.result(timeout=5)
    assert message in failure.value.message
    assert await _users(engine) == []


async def test_session_factory_is_the_one_built_at_startup(settings: Settings, redis: ArqRedis) -> None:
    """Each job opens its own session from the worker's factory (not a module global)."""
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    await client.provision_user(email="ctx@example.com", role="member", job_id=new_id())
    worker = await run_burst(settings)
    factory: SessionFactory = worker.ctx["session_factory"]
    assert factory.kw["expire_on_commit"] is False
    assert worker.ctx["engine"].pool.checkedout() == 0  # every job's session was closed


async def test_a_bad_row_in_a_group_fails_only_its_own_job(
    redis: ArqRedis, settings: Settings, engine: AsyncEngine
) -> None:
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    async with engine.begin() as conn:  # a row the database refuses, for real
        await conn.execute(text("ALTER TABLE users ADD CONSTRAINT no_bad CHECK (email NOT LIKE 'bad%')"))
    try:
        bad = await client.provision_user(email="bad@example.com", role="member", job_id=new_id())
        good = [
            await client.provision_user(email=f"good{i}@example.com", role="member", job_id=new_id())
            for i in range(10)
        ]
        worker = await run_burst(settings)
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE users DROP CONSTRAINT no_bad"))
    assert (worker.jobs_complete, worker.jobs_failed) == (10, 1)
    with pytest.raises(JobFailed, match="DatabaseError: CheckViolationError"):
        await bad.result(timeout=5)
    assert [(await job.result(timeout=5))["status"] for job in good] == ["created"] * 10
    assert len(await _users(engine)) == 10


async def test_a_retry_keeps_the_whole_stamp_so_equal_as_of_ties_break_as_they_first_did(
    redis: ArqRedis, settings: Settings, engine: AsyncEngine
) -> None:
    """Two roles at one as_of: the larger job id wins; sent again by `retry`, the loser still loses."""
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    await client.provision_user(email="tie@example.com", role="viewer", job_id=new_id())
    await run_burst(settings)
    as_of = int(time.time() * 1_000_000) + 1_000_000  # after the provision's stamp
    first, second = sorted([new_id("tie"), new_id("tie")])
    await client.set_user_role(email="tie@example.com", role="admin", job_id=second, as_of=as_of)
    await client.set_user_role(email="tie@example.com", role="member", job_id=first, as_of=as_of)
    await run_burst(settings)
    # `first` sent again under a new id (which sorts after `second`), keeping its stamp whole.
    again = await client.enqueue(
        "set_user_role", job_id=new_id("zz"), email="tie@example.com", role="member", as_of=as_of,
        stamp_job_id=first,
    )  # fmt: skip
    await run_burst(settings)
    assert (await again.result(timeout=5))["status"] == "superseded"
    assert await _users(engine) == [("tie@example.com", "admin", True, None)]
    async with engine.connect() as conn:
        recorded = set(
            await conn.scalars(text("SELECT job_id FROM user_changes WHERE email_key = 'tie@example.com'"))
        )
    assert first in recorded
    assert again.job_id not in recorded  # the retry is recorded under the stamp's job id, once


async def test_an_update_waits_for_its_provision_then_applies(redis: ArqRedis, settings: Settings) -> None:
    """An update_user that runs before its user exists is tried again, and lands once the user does."""
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    fast = settings.model_copy(update={"retry_base_delay": 0.05, "retry_max_delay": 0.2})
    as_of = now_micros()
    update = await client.update_user(
        email="later@example.com", role="admin", active=False, as_of=as_of, job_id=new_id()
    )
    worker = asyncio.create_task(run_burst(fast))
    # ARQ counts tries in arq:retry:<id>: a second try means the first found no user.
    while int(await redis.get(f"arq:retry:{update.job_id}") or 0) < 2:  # noqa: ASYNC110 - state in Redis
        await asyncio.sleep(0.01)
    provision = await client.provision_user(
        email="later@example.com", role="viewer", as_of=as_of - 1000, job_id=new_id()
    )
    await worker
    assert (await provision.result(timeout=5))["status"] == "created"
    result = await update.result(timeout=5)
    assert (result["status"], result["role"], result["is_active"]) == ("updated", "admin", False)


async def test_an_update_of_a_user_that_never_comes_gives_up(redis: ArqRedis, settings: Settings) -> None:
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    update = await client.update_user(email="never@example.com", active=True, job_id=new_id())
    await run_burst(
        settings.model_copy(update={"max_tries": 2, "retry_base_delay": 0.01, "retry_max_delay": 0.02})
    )
    with pytest.raises(
        JobFailed, match="GaveUp: update_user: gave up after 2 tries; last error NotProvisionedYet"
    ):
        await update.result(timeout=5)


async def test_a_hashed_passwords_write_stays_out_of_the_group_commit(
    redis: ArqRedis, settings: Settings, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sealed-password jobs come at hashing's pace: in the group commit they would keep it under load,
    and the cheap jobs beside them would wait for its window (docs/performance.md, "Password hashing
    pool"). Their writes go alone; a cheap job's, and an enqueuer-made hash's, are grouped."""
    seal_key = new_seal_key()
    settings = settings.model_copy(update={"seal_keys": SecretStr(seal_key)})
    grouped: list[str] = []
    apply = CommandGroups.apply

    async def recording(self: CommandGroups, command: UserCommand) -> UserOutcome:
        grouped.append(command["email"])
        return await apply(self, command)

    monkeypatch.setattr(CommandGroups, "apply", recording)
    client = ProvisioningClient(redis, queue_name=settings.queue_name, seal_key=seal_key)
    await client.provision_user(
        email="sealed@example.com", role="member", password="a long passphrase", job_id=new_id()
    )
    await client.provision_user(email="cheap@example.com", role="member", job_id=new_id())
    await client.provision_user(
        email="hashed@example.com", role="member", password_hash=hash_password("another"), job_id=new_id()
    )

    worker = await run_burst(settings)

    assert (worker.jobs_complete, worker.jobs_failed) == (3, 0)
    assert sorted(grouped) == ["cheap@example.com", "hashed@example.com"]
    stored = {email: password for email, _, _, password in await _users(engine)}
    assert str(stored["sealed@example.com"]).startswith("$argon2id$")
