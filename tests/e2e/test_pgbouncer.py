"""Behind PgBouncer in transaction pooling mode (a private instance): every function, every job succeeds."""

from __future__ import annotations

from pathlib import Path

import pytest
from arq.connections import ArqRedis
from arq.jobs import Job
from pydantic import SecretStr
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.ids import new_id
from tests.support.ordering_model import Command, State, final_states
from tests.support.processes import start_worker, stop, wait_until
from tests.support.servers import pgbouncer
from worker.client import ProvisioningClient
from worker.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("committing_sessions")]

ROLES = ("admin", "member", "viewer")


async def test_all_five_functions_through_pgbouncer_in_transaction_mode(
    settings: Settings, redis: ArqRedis, engine: AsyncEngine, tmp_path: Path
) -> None:
    client = ProvisioningClient(redis, queue_name=settings.queue_name)
    sent: list[Command] = []
    jobs: list[Job] = []

    async def send(function: str, email: str, role: str | None = None) -> None:
        job = await client.enqueue(function, job_id=new_id(), email=email, role=role)
        jobs.append(job)
        sent.append(Command(function, email, len(sent), job.job_id, role))

    for n in range(1000):
        await send("provision_user", f"pgb{n}@example.com", ROLES[n % 3])
    for n in range(1000):
        await send("set_user_role", f"pgb{n}@example.com", ROLES[(n + 1) % 3])
    for n in range(0, 1000, 2):
        await send("deactivate_user", f"pgb{n}@example.com")
    for n in range(0, 1000, 3):
        await send("delete_user", f"pgb{n}@example.com")
    for batch in range(10):
        users = [{"email": f"bulk{batch}-{n}@example.com", "role": "viewer"} for n in range(100)]
        job = await client.provision_users(users, job_id=new_id())
        jobs.append(job)
        sent += [Command("provision_users", u["email"], len(sent), job.job_id, "viewer") for u in users]

    with pgbouncer(tmp_path / "pgbouncer") as port:
        pooled_url = make_url(settings.database_url.get_secret_value()).set(port=port)
        pooled = settings.model_copy(
            update={"database_url": SecretStr(pooled_url.render_as_string(hide_password=False))}
        )
        worker = start_worker(pooled, tmp_path / "worker.log", database_pooler="pgbouncer", poll_delay=0.01)
        try:
            await wait_until(lambda: _finished(redis, jobs), within=180, what="every job's result")
        finally:
            stop(worker)

    infos = [await job.result_info() for job in jobs]
    failed = [(info.function, info.result) for info in infos if info is not None and not info.success]
    retried = sum(1 for info in infos if info is not None and info.job_try > 1)
    print(
        f"\nPgBouncer (transaction mode, 4 server connections): {len(jobs)} jobs, "
        f"{len(failed)} failed, {retried} needed a retry"
    )
    assert failed == []
    # Not even a retried one: without DATABASE_POOLER=pgbouncer, prepared statements collide on the
    # shared server connections, and those jobs succeed only on a later try.
    assert retried == 0
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT email, role, is_active, hashed_password FROM users"))
        assert {row.email.lower(): State(*row) for row in rows} == final_states(sent)


async def _finished(redis: ArqRedis, jobs: list[Job]) -> bool:
    return bool(await redis.exists(*(f"arq:result:{job.job_id}" for job in jobs)) == len(jobs))
