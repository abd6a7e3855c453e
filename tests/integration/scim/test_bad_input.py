"""Bad input: each case gets its SCIM error and writes nothing (no user row, no job, no Redis key)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.integration.scim.conftest import SCIM, Scim, new_email, patch_body, scim_client, user_body

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


async def assert_nothing_written(scim: Scim, users_before: int) -> None:
    assert await scim.user_count() == users_before
    assert await scim.queued() == []
    assert await scim.scim_keys() == []


def assert_scim_error(response: httpx.Response, status: int, scim_type: str | None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(SCIM)
    body = response.json()
    assert body["schemas"] == [ERROR_SCHEMA]
    assert body["status"] == str(status)
    assert body.get("scimType") == scim_type
    assert body["detail"]


@pytest.mark.parametrize("token", [None, "wrong-token", ""])
async def test_no_token_or_a_wrong_one_is_401_with_www_authenticate(scim: Scim, token: str | None) -> None:
    async with scim_client(scim.settings, token) as client:
        for method, path, body in (
            ("POST", "Users", user_body(new_email())),
            ("GET", "Users", None),
            ("GET", "Users/1", None),
            ("PATCH", "Users/1", patch_body({"op": "replace", "path": "active", "value": False})),
            ("DELETE", "Users/1", None),
            ("GET", "ServiceProviderConfig", None),
        ):
            response = await client.request(method, path, json=body)
            assert_scim_error(response, 401, None)
            assert response.headers["www-authenticate"] == 'Bearer realm="scim"'
    await assert_nothing_written(scim, 0)


async def test_a_basic_authorization_header_is_refused(scim: Scim) -> None:
    async with scim_client(scim.settings, None) as client:
        response = await client.get("Users", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_scim_error(response, 401, None)


async def test_a_body_over_the_limit_is_413(scim: Scim) -> None:
    big = user_body(new_email(), displayName="x" * (scim.settings.scim_max_body + 10))
    response = await scim.client.post("Users", json=big)
    assert_scim_error(response, 413, None)

    async def chunks() -> Any:  # no Content-Length: the streamed size is checked
        for _ in range(scim.settings.scim_max_body // 65536 + 2):
            yield b" " * 65536

    streamed = await scim.client.post("Users", content=chunks())
    assert_scim_error(streamed, 413, None)
    await assert_nothing_written(scim, 0)


@pytest.mark.parametrize("raw", [b"{not json", b"", b'{"schemas": [', b"\xff\xfe"])
async def test_malformed_json_is_400_invalid_syntax(scim: Scim, raw: bytes) -> None:
    created = await scim.client.post("Users", json=user_body(new_email()))
    user_id = created.json()["id"]
    before = await scim.user_count()
    await _clear_answered(scim)
    for method, path in (("POST", "Users"), ("PUT", f"Users/{user_id}"), ("PATCH", f"Users/{user_id}")):
        response = await scim.client.request(method, path, content=raw)
        assert_scim_error(response, 400, "invalidSyntax")
    await assert_nothing_written(scim, before)


async def _clear_answered(scim: Scim) -> None:
    keys = await scim.scim_keys()
    results = [key for key in keys if b":scim:" in key]
    if results:
        await scim.redis.delete(*results)


@pytest.mark.parametrize(
    ("expression", "scim_type"),
    [
        ('userName xx "a@example.com"', "invalidFilter"),
        ('userName gt "a"', "invalidFilter"),
        ('title eq "boss"', "invalidFilter"),
        ('emails[type eq "work"', "invalidFilter"),
        ("active eq 12", "invalidFilter"),
        ('userName eq "a" and', "invalidFilter"),
    ],
)
async def test_an_unknown_filter_operator_or_attribute_is_400_invalid_filter(
    scim: Scim, expression: str, scim_type: str
) -> None:
    response = await scim.client.get("Users", params={"filter": expression})
    assert_scim_error(response, 400, scim_type)
    await assert_nothing_written(scim, 0)


@pytest.mark.parametrize(
    "send",
    [
        lambda email: {"roles": [{"value": "superuser", "primary": True}]},
        lambda email: {"roles": [{"value": "Admin"}]},
        lambda email: {"roles": [{"value": "admin"}, {"value": "viewer"}]},
    ],
)
async def test_a_role_outside_the_three_is_400_invalid_value(
    scim: Scim, send: Callable[[str], dict[str, Any]]
) -> None:
    email = new_email()
    response = await scim.client.post("Users", json=user_body(email, **send(email)))
    assert_scim_error(response, 400, "invalidValue")
    await assert_nothing_written(scim, 0)


async def test_a_role_outside_the_three_in_put_or_patch_writes_nothing(scim: Scim) -> None:
    email = new_email()
    user_id = (await scim.client.post("Users", json=user_body(email))).json()["id"]
    await _clear_answered(scim)
    bad_put = await scim.client.put(f"Users/{user_id}", json=user_body(email, roles=[{"value": "root"}]))
    assert_scim_error(bad_put, 400, "invalidValue")
    bad_patch = await scim.client.patch(
        f"Users/{user_id}",
        json=patch_body({"op": "Add", "path": 'roles[primary eq "True"].value', "value": "god"}),
    )
    assert_scim_error(bad_patch, 400, "invalidValue")
    row = await scim.row(email)
    assert row is not None
    assert row["role"] == "member"
    await assert_nothing_written(scim, 1)


@pytest.mark.parametrize(
    "body",
    [
        {"schemas": ["urn:example:unknown"], "userName": "x@example.com"},
        {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]},
        {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "not an email"},
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "x@example.com",
            "active": "maybe",
        },
        [1, 2, 3],
    ],
)
async def test_bad_values_and_unknown_schemas_are_400(scim: Scim, body: Any) -> None:
    response = await scim.client.post("Users", content=json.dumps(body))
    assert response.status_code == 400, response.text
    assert response.json()["scimType"] in {"invalidValue", "invalidSyntax"}
    await assert_nothing_written(scim, 0)


async def test_bad_patch_messages_are_400(scim: Scim) -> None:
    email = new_email()
    user_id = (await scim.client.post("Users", json=user_body(email))).json()["id"]
    await _clear_answered(scim)
    for body, scim_type in (
        ({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]}, "invalidValue"),
        (patch_body({"op": "frobnicate", "path": "active", "value": True}), "invalidValue"),
        (patch_body({"op": "replace", "path": "nonsense", "value": 1}), "invalidPath"),
        (patch_body({"op": "remove"}), "noTarget"),
        (patch_body({"op": "replace", "path": "active", "value": "perhaps"}), "invalidValue"),
        (patch_body({"op": "remove", "path": "active"}), "mutability"),
    ):
        response = await scim.client.patch(f"Users/{user_id}", json=body)
        assert_scim_error(response, 400, scim_type)
    await assert_nothing_written(scim, 1)


async def test_a_password_in_a_get_response_never_happens(scim: Scim) -> None:
    email = new_email()
    password = "Tr0ub4dor&3-unique-marker"
    user_id = (await scim.client.post("Users", json=user_body(email, password=password))).json()["id"]
    for response in (
        await scim.client.get(f"Users/{user_id}"),
        await scim.client.get(f"Users/{user_id}", params={"attributes": "password,userName"}),
        await scim.client.get("Users"),
        await scim.client.get("Users", params={"filter": "password pr"}),
    ):
        assert password not in response.text
        assert '"password"' not in response.text


async def test_a_password_without_seal_keys_is_400_and_writes_nothing(scim: Scim) -> None:
    unsealed = scim.settings.model_copy(update={"seal_keys": None})
    async with scim_client(unsealed) as client:
        response = await client.post("Users", json=user_body(new_email(), password="secret-pass"))
    assert_scim_error(response, 400, "invalidValue")
    assert "SEAL_KEYS" in response.json()["detail"]
    await assert_nothing_written(scim, 0)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "Bulk", 501),
        ("POST", ".search", 501),
        ("POST", "Users/.search", 501),
        ("GET", "Me", 501),
        ("GET", "Groups", 404),
        ("POST", "Groups", 404),
        ("GET", "Nowhere", 404),
        ("PUT", "Users", 405),
    ],
)
async def test_unsupported_endpoints_answer_scim_errors(
    scim: Scim, method: str, path: str, status: int
) -> None:
    response = await scim.client.request(method, path, json={})
    assert_scim_error(response, status, None)
    await assert_nothing_written(scim, 0)


Check = Callable[[Scim], Awaitable[None]]
