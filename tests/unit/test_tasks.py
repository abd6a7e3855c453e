"""Tasks are declared once: the name from the function, the payload from its `command` annotation."""

from __future__ import annotations

import pytest

from worker.jobs.payloads import PAYLOADS, DeleteUser, ProvisionUser
from worker.runtime.context import JobContext
from worker.services.outcome import UserOutcome
from worker.tasks import TASKS, provision_user, task


def test_every_job_function_of_the_contract_is_a_task_named_after_its_function() -> None:
    assert sorted(t.__name__ for t in TASKS) == sorted(PAYLOADS)
    assert provision_user.__qualname__ == "provision_user"  # the name ARQ registers it under
    assert provision_user.__doc__ is not None
    assert provision_user.__doc__.startswith("Ensure an active user")


def test_a_task_not_in_the_job_contract_is_refused_when_declared() -> None:
    async def provision_someone(ctx: JobContext, function: str, command: ProvisionUser) -> UserOutcome:
        raise NotImplementedError

    with pytest.raises(TypeError, match=r"provision_someone\(ProvisionUser\) is not in the job contract"):
        task(provision_someone)


def test_a_task_whose_payload_differs_from_the_contracts_is_refused() -> None:
    async def provision_user(ctx: JobContext, function: str, command: DeleteUser) -> UserOutcome:
        raise NotImplementedError

    declared = len(TASKS)
    with pytest.raises(TypeError, match=r"provision_user\(DeleteUser\)"):
        task(provision_user)
    assert len(TASKS) == declared
