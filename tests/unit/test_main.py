"""Worker startup without a service: an unreachable database is refused; the ARQ settings' wiring."""

from __future__ import annotations

import pytest

from tests.support.contexts import start_and_stop
from worker.main import WorkerSettings
from worker.settings import Settings
from worker.wiring import StartupError, shutdown, startup, worker_settings


async def test_startup_refuses_an_unreachable_database_without_showing_the_password() -> None:
    url = "postgresql+asyncpg://provisioner:s3cr3t-pw@127.0.0.1:1/provisioning"
    with pytest.raises(StartupError) as refused:
        await start_and_stop(url)
    message = str(refused.value)
    assert message.startswith("cannot reach PostgreSQL at postgresql+asyncpg://provisioner:***@127.0.0.1:1/")
    assert message.endswith("start it, or fix DATABASE_URL")
    assert "s3cr3t-pw" not in message
    assert "\n" not in message


def test_worker_settings_wire_json_and_the_hooks() -> None:
    from worker.jobs.serialization import deserialize_job, serialize
    from worker.tasks import TASKS

    assert WorkerSettings.job_serializer is serialize  # type: ignore[attr-defined]
    assert WorkerSettings.job_deserializer is deserialize_job  # type: ignore[attr-defined]
    assert WorkerSettings.on_startup is startup  # type: ignore[attr-defined]
    assert WorkerSettings.on_shutdown is shutdown  # type: ignore[attr-defined]
    assert [f.__name__ for f in WorkerSettings.functions] == [t.__name__ for t in TASKS]  # type: ignore[attr-defined]


def test_housekeeping_cron_jobs_are_named_after_the_queue(settings: Settings) -> None:
    """ARQ's cron job ids are the name and the time: two queues on one Redis must not share runs."""
    cron_jobs = worker_settings(settings)["cron_jobs"]
    assert [(job.name, job.coroutine.__name__) for job in cron_jobs] == [
        (f"{settings.queue_name}:expire_intents", "expire_intents"),
        (f"{settings.queue_name}:purge_expired", "purge_expired"),
    ]
