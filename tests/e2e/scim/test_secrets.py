"""A password sent on create is in no response, no log line of either process, and nowhere in
Redis in clear: every command Redis received (MONITOR) and every key left afterwards are read."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import cast

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.scim.checks import USER_SCHEMA, assert_database_holds, new_email, patch, scim_json
from tests.support.scim import ScimStack
from worker.security import verify_password

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("committing_sessions")]


async def _values(client: aioredis.Redis, pattern: str) -> list[bytes]:
    """Every key matching `pattern` and what it holds, whatever its type."""
    found: list[bytes] = []
    async for key in client.scan_iter(match=pattern, count=1000):
        found.append(key)
        kind = (await client.type(key)).decode()
        if kind == "string":
            found.append((await client.get(key)) or b"")
        elif kind == "hash":
            for field, value in (await cast(Awaitable[dict[bytes, bytes]], client.hgetall(key))).items():
                found += [field, value]
        elif kind == "list":
            found += await cast(Awaitable[list[bytes]], client.lrange(key, 0, -1))
        elif kind == "set":
            found += list(await cast(Awaitable[set[bytes]], client.smembers(key)))
        elif kind == "zset":
            found += [member for member, _score in await client.zrange(key, 0, -1, withscores=True)]
    return found


async def test_a_password_on_create_is_in_no_response_log_or_redis_value(
    scim_stack: ScimStack, engine: AsyncEngine
) -> None:
    password = f"Pw-{uuid.uuid4().hex}"
    email = new_email("secret")
    redis = aioredis.Redis.from_url(scim_stack.settings.redis_url.get_secret_value())
    seen: list[bytes] = []
    try:
        async with redis.monitor() as monitor:  # MONITOR is on before the first request is sent

            async def listen() -> None:
                async for command in monitor.listen():
                    seen.append(str(command).encode())

            listening = asyncio.create_task(listen())
            async with scim_stack.client() as client:
                created = await client.post(
                    "Users", json={"schemas": [USER_SCHEMA], "userName": email, "password": password}
                )
                user = scim_json(created, 201)
                responses = [
                    created,
                    await client.get(f"Users/{user['id']}"),
                    await client.get(f"Users/{user['id']}", params={"attributes": "password,userName"}),
                    await client.get("Users", params={"filter": f'userName eq "{email}"'}),
                    # A full-state PUT re-sends the same password: still never answered.
                    await client.put(
                        f"Users/{user['id']}",
                        json={"schemas": [USER_SCHEMA], "userName": email, "password": password},
                    ),
                    await client.patch(
                        f"Users/{user['id']}", json=patch({"op": "replace", "value": {"active": True}})
                    ),
                ]
            await asyncio.sleep(0.5)  # the worker's last writes reach MONITOR
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
        stored = await _values(redis, f"*{scim_stack.settings.queue_name}*")
    finally:
        await redis.aclose()

    for response in responses:
        assert response.status_code in {200, 201}, response.text
        assert password not in response.text
        assert "password" not in response.text.lower()
    assert len(seen) > 5, "MONITOR saw nothing: the scan would prove nothing"
    assert not [line for line in seen if password.encode() in line]
    assert not [value for value in stored if password.encode() in value]
    assert password not in scim_stack.logs()

    row = await assert_database_holds(engine, user)
    assert row["hashed_password"] is not None
    assert verify_password(row["hashed_password"], password).valid


async def test_tokens_are_never_logged(scim_stack: ScimStack) -> None:
    async with scim_stack.client() as client:
        assert (await client.get("Users", params={"count": "1"})).status_code == 200
    async with scim_stack.client(token="wrong-token-never-logged") as client:
        assert (await client.get("Users")).status_code == 401
    logs = scim_stack.logs()
    assert "wrong-token-never-logged" not in logs
    for token in scim_stack.tokens:
        assert token not in logs
