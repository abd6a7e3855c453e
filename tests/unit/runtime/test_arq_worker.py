"""ProvisioningWorker's construction: ARQ's signature (what ARQ's command line passes it) and its
state, set from the settings in `ctx`."""

from __future__ import annotations

import inspect

import arq.worker
import pytest
from arq.worker import Worker, func, get_kwargs

from worker.runtime.arq_worker import ProvisioningWorker
from worker.settings import Settings


async def _noop(ctx: dict[str, object]) -> None:
    return None


def test_arq_passes_it_every_setting_it_passes_its_own_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """ARQ's command line keeps the settings the class's signature names (`arq.worker.get_kwargs`)."""
    settings = {"functions": [func(_noop, name="noop")], "max_jobs": 7, "not_a_worker_setting": 1}
    monkeypatch.setattr(arq.worker, "Worker", ProvisioningWorker)  # as importing worker.main does

    assert inspect.signature(ProvisioningWorker).parameters == inspect.signature(Worker).parameters
    assert set(get_kwargs(settings)) == {"functions", "max_jobs"}


async def test_its_state_is_set_when_it_is_built(settings: Settings) -> None:
    worker = ProvisioningWorker(
        functions=[func(_noop, name="noop")],
        handle_signals=False,
        ctx={"settings": settings.model_copy(update={"bulk_concurrency": 3, "redis_max_outage": 12.0})},
    )

    assert worker.large_job_limit == 6
    assert worker.outages.max_outage == 12.0
    assert worker.outages.unwritten == {}
    assert worker.claim.script.startswith("-- Claims due jobs")


async def test_without_our_settings_it_keeps_arqs_defaults() -> None:
    worker = ProvisioningWorker(functions=[func(_noop, name="noop")], handle_signals=False, max_jobs=4)

    assert worker.large_job_limit == 4
    assert worker.outages.max_outage == 300.0
