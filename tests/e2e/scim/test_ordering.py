"""Two PATCHes for one user at once, 200 times: the later arrival wins a field both touch, and
changes to different fields both survive.

"Arrival" is when the service stamps a request (`as_of` = its clock on arrival, the job id breaking
ties); the answer order says nothing about it, since a command can be answered before an older one
is. Two sound ways to know which request arrived later, each tested 200 times:

- truly concurrent: both requests are released together; the audit trail records each command
  with its stamp, and the user must end as the command with the later stamp asked (that command
  is never superseded, so its row carries the role it set);
- one after the other's arrival: the second request is sent as soon as the first one's job is in
  Redis (so the first was stamped), while the first is still being processed; the second must win.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.scim.checks import USER_SCHEMA, new_email, patch, scim_json, user_row
from tests.support.scim import ScimStack

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("committing_sessions")]

ROUNDS = 200


def _role(value: str) -> dict[str, Any]:
    return patch({"op": "replace", "path": "roles", "value": [{"value": value, "primary": True}]})


async def _create_users(client: httpx.AsyncClient, label: str, count: int) -> list[str]:
    """`count` new members; their ids."""
    gate = asyncio.Semaphore(16)

    async def create() -> str:
        email = new_email(label)
        async with gate:
            response = await client.post("Users", json={"schemas": [USER_SCHEMA], "userName": email})
        return str(scim_json(response, 201)["id"])

    return list(await asyncio.gather(*(create() for _ in range(count))))


async def _stamps(engine: AsyncEngine, user_id: int) -> list[tuple[int, str, str, str | None]]:
    """(as_of, job id, status, role after) of each update_user recorded for the user, oldest stamp first."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT as_of, job_id, status, role FROM user_changes "
                "WHERE user_id = :id AND function = 'update_user' ORDER BY as_of, job_id"
            ),
            {"id": user_id},
        )
        return [(r.as_of, r.job_id, r.status, r.role) for r in rows]


async def test_same_field_sent_concurrently_ends_as_the_later_stamped_command(
    scim_stack: ScimStack, engine: AsyncEngine
) -> None:
    async with scim_stack.client(limits=httpx.Limits(max_connections=4)) as client:
        ids = await _create_users(client, "race", ROUNDS)
        winners: dict[str, int] = {"admin": 0, "viewer": 0}
        for user_id in ids:
            first, second = await asyncio.gather(
                client.patch(f"Users/{user_id}", json=_role("admin")),
                client.patch(f"Users/{user_id}", json=_role("viewer")),
            )
            scim_json(first, 200), scim_json(second, 200)
            stamps = await _stamps(engine, int(user_id))
            assert len(stamps) == 2, stamps  # both commands were stamped and recorded; none lost
            assert stamps[0][0] != stamps[1][0], "two arrivals share a stamp"
            later = stamps[-1]
            assert later[2] == "updated", stamps  # the newest command is never superseded
            row = await user_row(engine, int(user_id))
            assert row is not None
            final = str(getattr(row["role"], "value", row["role"]))
            assert final == later[3], (user_id, stamps, final)
            winners[final] += 1
    assert sum(winners.values()) == ROUNDS


async def _job_ids(client: aioredis.Redis, queue: str) -> set[str]:
    """Every SCIM job id on `queue` Redis knows of (queued, running or finished)."""
    found = set()
    async for key in client.scan_iter(match=f"arq:*:{queue}:scim:*", count=1000):
        found.add(key.decode().split(":", 2)[2])
    return found


async def test_same_field_sent_after_the_first_arrived_ends_as_the_second(
    scim_stack: ScimStack, engine: AsyncEngine
) -> None:
    queue = scim_stack.settings.queue_name
    redis = aioredis.Redis.from_url(scim_stack.settings.redis_url.get_secret_value())
    in_flight = 0
    try:
        async with scim_stack.client(limits=httpx.Limits(max_connections=4)) as client:
            ids = await _create_users(client, "after", ROUNDS)
            for round_, user_id in enumerate(ids):
                earlier, later = ("admin", "viewer") if round_ % 2 else ("viewer", "admin")
                known = await _job_ids(redis, queue)
                first = asyncio.create_task(client.patch(f"Users/{user_id}", json=_role(earlier)))
                deadline = time.monotonic() + 10
                while not (await _job_ids(redis, queue)) - known:  # the first is stamped and queued
                    assert time.monotonic() < deadline, "the first PATCH's job never appeared"
                    await asyncio.sleep(0.001)
                in_flight += not first.done()
                second = await client.patch(f"Users/{user_id}", json=_role(later))
                scim_json(await first, 200)
                assert scim_json(second, 200)["roles"] == [{"value": later, "primary": True}]
                row = await user_row(engine, int(user_id))
                assert row is not None
                assert str(getattr(row["role"], "value", row["role"])) == later, round_
    finally:
        await redis.aclose()
    # The two overlapped: the first was still being processed when the second was sent.
    assert in_flight > ROUNDS // 2, f"only {in_flight} of {ROUNDS} rounds overlapped"


async def test_different_fields_sent_concurrently_both_survive(
    scim_stack: ScimStack, engine: AsyncEngine
) -> None:
    async with scim_stack.client(limits=httpx.Limits(max_connections=4)) as client:
        ids = await _create_users(client, "fields", ROUNDS)
        for round_, user_id in enumerate(ids):
            if round_ % 2:
                one = _role("admin")
                other = patch({"op": "replace", "path": "externalId", "value": f"ext-{round_}"})
                expected = {"role": "admin", "is_active": True, "external_id": f"ext-{round_}"}
            else:  # active=false alone is a deactivate_user; the role change an update_user
                one = _role("viewer")
                other = patch({"op": "replace", "value": {"active": False}})
                expected = {"role": "viewer", "is_active": False, "external_id": None}
            responses = await asyncio.gather(
                client.patch(f"Users/{user_id}", json=one), client.patch(f"Users/{user_id}", json=other)
            )
            for response in responses:
                scim_json(response, 200)
            row = await user_row(engine, int(user_id))
            assert row is not None
            found = {
                "role": str(getattr(row["role"], "value", row["role"])),
                "is_active": row["is_active"],
                "external_id": row["external_id"],
            }
            assert found == expected, round_
