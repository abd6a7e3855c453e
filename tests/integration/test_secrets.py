"""Secrets stay secret: sealed passwords end to end, and a canary that must appear nowhere."""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import cast

import pytest
from arq.connections import ArqRedis
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.integration.test_tasks import ENQUEUE_LUA
from tests.support.ids import RUN_ID, new_id
from tests.support.processes import ROOT, run_module, worker_env
from tests.support.settings import make_settings
from tests.support.worker_runner import run_burst
from worker.client import ProvisioningClient
from worker.jobs.errors import DatabaseError, JobFailed
from worker.jobs.identity import identity_key
from worker.jobs.payloads import DeactivateUser
from worker.jobs.sealing import new_seal_key, seal_password
from worker.jobs.stamps import now_micros
from worker.passwords.policy import hash_password, verify_password
from worker.repositories.user import UserCommand, UserRepository
from worker.runtime.context import JobContext
from worker.runtime.failures import failed_job
from worker.runtime.job_run import run_job
from worker.services.outcome import UserOutcome
from worker.settings import Settings

pytestmark = pytest.mark.usefixtures("committing_sessions")


@pytest.fixture
def seal_key() -> str:
    return new_seal_key()


@pytest.fixture
def sealing_settings(database_url: str, seal_key: str) -> Settings:
    return make_settings(database_url, seal_keys=seal_key, sql_echo=True)


async def _stored_hash(engine: AsyncEngine, email: str) -> str | None:
    async with engine.connect() as conn:
        stored = await conn.scalar(text("SELECT hashed_password FROM users WHERE email = :e"), {"e": email})
        return cast("str | None", stored)


async def _user_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT count(*) FROM users")) or 0)


async def _redis_dump(redis: ArqRedis) -> tuple[int, int, bytes]:
    """Every key this run created, with its value: (keys, results, all bytes)."""
    keys = [key async for key in redis.scan_iter(match=f"*t{RUN_ID}*", count=1000)]
    dump, results = [], 0
    for key in keys:
        kind = (await redis.type(key)).decode()
        dump.append(key)
        if kind == "string":
            dump.append(await redis.get(key) or b"")
            results += key.startswith(b"arq:result:")
        elif kind == "zset":
            dump.extend(member for member, _ in await redis.zrange(key, 0, -1, withscores=True))
        elif kind == "hash":
            dump.extend(b"".join(pair) for pair in (await redis.hgetall(key)).items())  # type: ignore[misc]
        elif kind == "list":
            dump.extend(await redis.lrange(key, 0, -1))  # type: ignore[misc]
    return len(keys), results, b"\n".join(dump)


async def test_canary_password_appears_nowhere_on_any_path(
    sealing_settings: Settings,
    seal_key: str,
    redis: ArqRedis,
    engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    caplog.set_level(logging.DEBUG)  # every logger: arq, worker, sqlalchemy (SQL_ECHO on), asyncpg
    client = ProvisioningClient(redis, queue_name=sealing_settings.queue_name, seal_key=seal_key)
    sealed_forms = []

    # 1. Python client, sealed by the client.
    jobs = [
        await client.provision_user(
            email="sealed@example.com", role="member", password=canary, job_id=new_id()
        )
    ]
    # 2. Python client, pre-hashed.
    canary_hash = hash_password(canary)
    jobs.append(
        await client.provision_user(
            email="hashed@example.com", role="member", password_hash=canary_hash, job_id=new_id()
        )
    )
    # 3. The CLI, password on standard input.
    cli_job = new_id()
    cli = run_module(  # a real CLI process, briefly
        "worker",
        "enqueue",
        "provision_user",
        "--email",
        "cli@example.com",
        "--role",
        "viewer",
        "--password-stdin",
        "--job-id",
        cli_job,
        env=worker_env(sealing_settings, seal_keys=seal_key),
        stdin=canary + "\n",
        check=True,
    )
    jobs.append(client.job(cli_job))
    # 4. Raw Redis, sealed by "another language" (Fernet, as docs/jobs.md shows).
    raw_id, now_ms = new_id(), int(time.time() * 1000)
    token = Fernet(seal_key.encode()).encrypt(canary.encode()).decode()
    payload = json.dumps(
        {
            "f": "provision_user",
            "a": [],
            "k": {"email": "raw@example.com", "role": "admin", "password_sealed": token},
            "et": now_ms,
        }
    )
    await redis.execute_command(  # type: ignore[no-untyped-call]  # unannotated in redis-py
        "EVAL",
        ENQUEUE_LUA,
        3,
        f"arq:job:{raw_id}",
        f"arq:result:{raw_id}",
        sealing_settings.queue_name,
        payload,
        86_400_000,
        now_ms,
        raw_id,
    )
    jobs.append(client.job(raw_id))
    # 5. A failing path: a tampered sealed canary.
    tampered = token[:-8] + ("A" * 8 if not token.endswith("A" * 8) else "B" * 8)
    failing = await client.enqueue(
        "provision_user", job_id=new_id(), email="bad@example.com", role="admin", password_sealed=tampered
    )
    sealed_forms += [
        canary_hash,
        token,
        tampered,
        *await _queued_sealed_tokens(redis, jobs[0].job_id, cli_job),
    ]

    await run_burst(sealing_settings)

    assert [(await job.result(timeout=5))["status"] for job in jobs] == ["created"] * 4
    with pytest.raises(JobFailed, match="password_sealed could not be opened"):
        await failing.result(timeout=5)
    for email in ("sealed@example.com", "hashed@example.com", "cli@example.com", "raw@example.com"):
        stored = await _stored_hash(engine, email)
        assert stored is not None
        assert verify_password(stored, canary).valid

    keys, results, dump = await _redis_dump(redis)
    lines = [caplog.handler.format(record) for record in caplog.records]
    sql_lines = [r for r in caplog.records if r.name.startswith("sqlalchemy.engine")]
    haystacks = {
        "redis": dump.decode(errors="replace"),
        "logs": "\n".join(lines),
        "cli": cli.stdout + cli.stderr,
    }
    for where, haystack in haystacks.items():
        for secret in (canary, *sealed_forms):
            assert secret not in haystack, f"a secret leaked into {where}"
    assert f"{jobs[1].job_id}:provision_user(…)" in haystacks["logs"]  # ARQ's start line, redacted
    print(
        f"\ncanary scan: {keys} Redis keys ({results} results), {len(lines)} log lines "
        f"({len(sql_lines)} from SQL echo), CLI output; "
        f"the canary and {len(sealed_forms)} derived secrets (its hash, sealed forms): 0 hits"
    )
    assert results == 5
    assert sql_lines  # SQL echo was on: the scan covered statement logs too


async def _queued_sealed_tokens(redis: ArqRedis, *job_ids: str) -> list[str]:
    tokens = []
    for job_id in job_ids:
        raw = await redis.get(f"arq:job:{job_id}")
        assert raw is not None
        tokens.append(json.loads(raw)["k"]["password_sealed"])
    return tokens


async def test_a_sealed_job_run_twice_keeps_the_first_hash(
    sealing_settings: Settings, seal_key: str, redis: ArqRedis, engine: AsyncEngine
) -> None:
    client = ProvisioningClient(redis, queue_name=sealing_settings.queue_name, seal_key=seal_key)
    first = await client.provision_user(
        email="twice@example.com", role="member", password="pw-one", job_id=new_id()
    )
    await run_burst(sealing_settings)
    stored = await _stored_hash(engine, "twice@example.com")
    again = await client.provision_user(
        email="twice@example.com", role="member", password="pw-one", job_id=new_id()
    )
    await run_burst(sealing_settings)
    assert await _stored_hash(engine, "twice@example.com") == stored  # re-run: not even re-hashed
    changed = await client.provision_user(
        email="twice@example.com", role="member", password="pw-two", job_id=new_id()
    )
    await run_burst(sealing_settings)

    assert [(await j.result(timeout=5))["status"] for j in (first, again, changed)] == [
        "created",
        "unchanged",
        "updated",
    ]
    final = await _stored_hash(engine, "twice@example.com")
    assert final != stored
    assert final is not None
    assert verify_password(final, "pw-two").valid


@pytest.mark.parametrize("problem", ["tampered", "wrong key", "expired", "no keys"])
async def test_unopenable_sealed_passwords_fail_once_and_write_nothing(
    database_url: str, seal_key: str, redis: ArqRedis, engine: AsyncEngine, problem: str
) -> None:
    settings = make_settings(
        database_url, seal_keys=None if problem == "no keys" else seal_key, seal_max_age=3600
    )
    token = {
        "tampered": seal_password("pw", seal_key)[:-6] + "AAAAAA",
        "wrong key": seal_password("pw", new_seal_key()),
        "expired": Fernet(seal_key.encode()).encrypt_at_time(b"pw", int(time.time()) - 7200).decode(),
        "no keys": seal_password("pw", seal_key),
    }[problem]
    expected = {
        "tampered": "could not be opened",
        "wrong key": "could not be opened",
        "expired": "password_sealed expired",
        "no keys": "this worker holds no SEAL_KEYS",
    }[problem]
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    job = await client.enqueue(
        "provision_user", job_id=new_id(), email="x@example.com", role="admin", password_sealed=token
    )

    worker = await run_burst(settings)

    assert (worker.jobs_failed, worker.jobs_retried) == (1, 0)
    with pytest.raises(JobFailed, match=f"SealedPasswordRefused: .*{expected}") as failure:
        await job.result(timeout=5)
    assert token not in str(failure.value)
    assert await _user_count(engine) == 0


async def test_jobs_sealed_before_a_key_rotation_still_succeed(
    database_url: str, redis: ArqRedis, engine: AsyncEngine
) -> None:
    old_key, new_key = new_seal_key(), new_seal_key()
    before = make_settings(database_url, seal_keys=old_key)
    queued = await ProvisioningClient(redis, queue_name=before.queue_name, seal_key=old_key).provision_user(
        email="rotated@example.com", role="member", password="from before", job_id=new_id()
    )
    # Rotation: the worker now holds the new key first and the old one second.
    after = make_settings(database_url, seal_keys=f"{new_key},{old_key}", queue_name=before.queue_name)
    await run_burst(after)
    assert (await queued.result(timeout=5))["status"] == "created"
    stored = await _stored_hash(engine, "rotated@example.com")
    assert stored is not None
    assert verify_password(stored, "from before").valid


async def test_a_pickled_payload_never_runs(
    settings: Settings, redis: ArqRedis, engine: AsyncEngine, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (__import__("os").system, (f"touch {marker}",))

    job_id = new_id()
    payload = pickle.dumps({"f": "provision_user", "a": [], "k": {"x": Exploit()}, "t": 1, "et": 1})
    await redis.set(f"arq:job:{job_id}", payload, px=60_000)
    await redis.zadd(settings.queue_name, {job_id: int(time.time() * 1000)})

    worker = await run_burst(settings)
    result = await ProvisioningClient(redis, queue_name=settings.queue_name).job(job_id).result_info()

    assert not marker.exists()
    assert worker.jobs_failed == 1
    assert result is not None
    assert result.success is False
    assert "pickle is refused" in str(result.result)
    assert await _user_count(engine) == 0


async def test_database_errors_do_not_carry_sql_parameters(db_session: AsyncSession) -> None:
    secret_hash = hash_password("do-not-print-me")
    users = UserRepository(db_session)
    key = identity_key("p@example.com")
    command: UserCommand = {
        "key": key,
        "email": "P@example.com",
        "function": "provision_user",
        "role": "owner",  # no role: the database refuses the row, with the hash among the parameters
        "hashed_password": secret_hash,
        "as_of": now_micros(),
        "job_id": new_id(),
        "digest": None,
        "old_digest": None,
        "active": None,
        "external_id": None,
    }
    await users.lock([key])
    with pytest.raises(IntegrityError) as failure:
        await users.apply([command], retention=3600)
    assert "ck_users_role" in str(failure.value)
    assert secret_hash not in str(failure.value)
    assert "parameters hidden" in str(failure.value)


async def test_a_value_the_driver_quotes_stays_out_of_the_jobs_error_and_failure_record(
    settings: Settings, redis: ArqRedis, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    # asyncpg names a query argument it cannot encode, value and all, in its error's first line.
    canary = hash_password("quoted-by-the-driver")

    async def runner(ctx: JobContext, function: str, command: DeactivateUser) -> UserOutcome:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT CAST(:value AS integer)"), {"value": canary})
        raise AssertionError("the statement above is refused")

    job_id = new_id()
    ctx = cast(JobContext, {"settings": settings, "redis": redis, "job_id": job_id, "job_try": 1})
    with caplog.at_level(logging.DEBUG), pytest.raises(DatabaseError) as failure:
        await run_job(ctx, "deactivate_user", DeactivateUser, runner, (), {"email": "q@example.com"})

    assert str(failure.value).startswith("DataError: invalid input for query argument $1: (value withheld)")
    assert failure.value.__cause__ is None
    assert failure.value.__suppress_context__
    record = await failed_job(redis, settings.queue_name, job_id)
    assert record is not None
    assert record["error_type"] == "DatabaseError"
    assert canary not in json.dumps(record)
    assert canary not in caplog.text


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
async def test_a_password_sealed_by_the_documented_node_js_code_opens(
    sealing_settings: Settings, seal_key: str, redis: ArqRedis, engine: AsyncEngine
) -> None:
    docs = (ROOT / "docs" / "jobs.md").read_text()
    code = re.search(r"```js\n(.*?)```", docs, re.DOTALL)
    assert code is not None
    script = (
        code.group(1) + "\nprocess.stdout.write(sealPassword(process.env.PASSWORD, process.env.SEAL_KEY));\n"
    )
    node = await asyncio.create_subprocess_exec(
        "node",
        "-e",
        script,
        env={"PASSWORD": "sealed in node ✓", "SEAL_KEY": seal_key},
        stdout=asyncio.subprocess.PIPE,
    )
    token, _ = await node.communicate()
    assert node.returncode == 0
    job = await ProvisioningClient(redis, queue_name=sealing_settings.queue_name).enqueue(
        "provision_user",
        job_id=new_id(),
        email="node@example.com",
        role="member",
        password_sealed=token.decode(),
    )
    await run_burst(sealing_settings)
    assert (await job.result(timeout=5))["status"] == "created"
    stored = await _stored_hash(engine, "node@example.com")
    assert stored is not None
    assert verify_password(stored, "sealed in node ✓").valid


async def test_a_full_state_update_re_sending_the_password_keeps_the_hash_and_writes_no_audit_row(
    sealing_settings: Settings, seal_key: str, redis: ArqRedis, engine: AsyncEngine
) -> None:
    """What an identity provider's periodic PUT does: same role, same active, same password."""
    client = ProvisioningClient(redis, queue_name=sealing_settings.queue_name, seal_key=seal_key)
    email = "full-state@example.com"
    await client.provision_user(email=email, role="member", password="pw-one", job_id=new_id())
    await run_burst(sealing_settings)
    stored = await _stored_hash(engine, email)
    resent = await client.update_user(
        email=email, role="member", active=True, password="pw-one", job_id=new_id()
    )
    await run_burst(sealing_settings)
    assert (await resent.result(timeout=5))["status"] == "unchanged"
    assert await _stored_hash(engine, email) == stored
    async with engine.connect() as conn:
        functions = (
            await conn.scalars(text("SELECT function FROM user_changes WHERE email = :e"), {"e": email})
        ).all()
    assert functions == ["provision_user"]

    changed = await client.update_user(email=email, password="pw-two", job_id=new_id())
    await run_burst(sealing_settings)
    assert (await changed.result(timeout=5))["status"] == "updated"
    final = await _stored_hash(engine, email)
    assert final is not None
    assert final != stored
    assert verify_password(final, "pw-two").valid
