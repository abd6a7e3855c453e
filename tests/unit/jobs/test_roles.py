"""The job contract's role names and the database's `Role` enum name the same roles."""

from __future__ import annotations

from typing import get_args

from worker.db.models import Role
from worker.jobs.payloads import RoleName


def test_every_role_name_a_job_may_send_is_a_role_and_every_role_can_be_sent() -> None:
    assert sorted(get_args(RoleName)) == sorted(role.value for role in Role)
