"""/Users over the app with a real worker: lifecycle, filters, paging, protocol details."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pydantic import SecretStr

from tests.integration.scim.conftest import (
    NEW_TOKEN,
    OLD_TOKEN,
    SCIM,
    Scim,
    new_email,
    patch_body,
    scim_client,
    user_body,
)


async def create(scim: Scim, email: str, **extra: Any) -> dict[str, Any]:
    response = await scim.client.post("Users", json=user_body(email, **extra))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_create_answers_201_with_the_resource_as_the_database_holds_it(scim: Scim) -> None:
    email = new_email("Create")
    response = await scim.client.post(
        "Users", json=user_body(email, externalId="ext-1", roles=[{"value": "admin", "primary": True}])
    )
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith(SCIM)
    body = response.json()
    row = await scim.row(email)
    assert row is not None
    assert body["id"] == str(row["id"])
    assert body["userName"] == row["email"] == email
    assert body["active"] is True
    assert row["is_active"] is True
    assert body["roles"] == [{"value": "admin", "primary": True}]
    assert row["role"] == "admin"
    assert body["externalId"] == row["external_id"] == "ext-1"
    assert body["emails"] == [{"value": email, "type": "work", "primary": True}]
    assert body["meta"]["resourceType"] == "User"
    assert body["meta"]["location"] == f"http://scim.test/scim/v2/Users/{row['id']}"
    assert response.headers["location"] == body["meta"]["location"]
    assert body["meta"]["created"]
    assert body["meta"]["lastModified"]


async def test_create_without_a_role_gets_the_default_role(scim: Scim) -> None:
    email = new_email()
    body = await create(scim, email)
    assert body["roles"] == [{"value": "member", "primary": True}]


async def test_create_with_active_false_provisions_then_deactivates(scim: Scim) -> None:
    email = new_email()
    body = await create(scim, email, active=False)
    assert body["active"] is False
    row = await scim.row(email)
    assert row is not None
    assert row["is_active"] is False


async def test_a_second_create_for_the_same_user_name_any_case_is_409_uniqueness(scim: Scim) -> None:
    email = new_email("dup")
    await create(scim, email)
    again = await scim.client.post(
        "Users", json=user_body(email.upper().replace("EXAMPLE.COM", "example.com"))
    )
    assert again.status_code == 409
    assert again.json()["scimType"] == "uniqueness"
    assert await scim.user_count() == 1


async def test_get_of_an_unknown_id_is_404(scim: Scim) -> None:
    for unknown in ("999999999", "not-a-number", "-1"):
        response = await scim.client.get(f"Users/{unknown}")
        assert response.status_code == 404, unknown
        assert response.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
        assert response.json()["status"] == "404"


async def test_delete_is_204_then_get_is_404_and_the_row_is_gone(scim: Scim) -> None:
    email = new_email()
    user_id = (await create(scim, email))["id"]
    deleted = await scim.client.delete(f"Users/{user_id}")
    assert deleted.status_code == 204
    assert (await scim.client.get(f"Users/{user_id}")).status_code == 404
    assert await scim.row(email) is None
    assert (await scim.client.delete(f"Users/{user_id}")).status_code == 404


async def test_a_create_after_a_delete_gets_a_new_id(scim: Scim) -> None:
    email = new_email()
    first = (await create(scim, email))["id"]
    assert (await scim.client.delete(f"Users/{first}")).status_code == 204
    second = (await create(scim, email))["id"]
    assert second != first


async def test_filters_match_user_name_case_insensitively_and_include_inactive_users(scim: Scim) -> None:
    email = new_email("Filter")
    user_id = (await create(scim, email, active=False, externalId="Ext-Case"))["id"]
    for expression in (
        f'userName eq "{email}"',
        f'userName eq "{email.upper()}"',
        f'emails.value eq "{email.lower()}"',
        f'emails[value eq "{email}"]',
        f'emails[type eq "work" and value co "{email[2:8].upper()}"]',
        f'userName sw "{email[:6].upper()}"',
        'externalId eq "Ext-Case"',
        "active eq false",
        f'userName eq "{email}" and active eq false and externalId pr',
        'userName eq "nobody@example.com" or externalId eq "Ext-Case"',
    ):
        response = await scim.client.get("Users", params={"filter": expression})
        assert response.status_code == 200, (expression, response.text)
        listed = response.json()
        assert listed["totalResults"] == 1, expression
        assert [user["id"] for user in listed["Resources"]] == [user_id], expression
    for expression in ('externalId eq "ext-case"', "active eq true", f'not (userName eq "{email}")'):
        response = await scim.client.get("Users", params={"filter": expression})
        assert response.json()["totalResults"] == 0, expression


async def test_paging_counts_start_index_from_1_with_an_exact_total(scim: Scim) -> None:
    ids = [(await create(scim, new_email(f"page{n}")))["id"] for n in range(5)]
    seen: list[str] = []
    for start in (1, 3, 5):
        response = await scim.client.get("Users", params={"startIndex": start, "count": 2})
        page = response.json()
        assert page["totalResults"] == 5
        assert page["startIndex"] == start
        assert page["itemsPerPage"] == len(page["Resources"])
        seen += [user["id"] for user in page["Resources"]]
    assert seen == sorted(ids, key=int)
    counted = (await scim.client.get("Users", params={"count": 0})).json()
    assert counted["totalResults"] == 5
    assert counted.get("Resources", []) == []
    beyond = (await scim.client.get("Users", params={"startIndex": 50})).json()
    assert beyond["totalResults"] == 5
    assert beyond.get("Resources", []) == []
    clamped = (await scim.client.get("Users", params={"startIndex": 0, "count": 1})).json()
    assert clamped["startIndex"] == 1
    assert len(clamped["Resources"]) == 1


async def test_put_changes_only_what_it_names_and_keeps_the_id(scim: Scim) -> None:
    email = new_email()
    created = await create(scim, email, roles=[{"value": "viewer"}], externalId="e1")
    user_id = created["id"]
    replaced = await scim.client.put(
        f"Users/{user_id}", json=user_body(email, roles=[{"value": "admin", "primary": True}], active=True)
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["id"] == user_id
    assert replaced.json()["roles"][0]["value"] == "admin"
    assert replaced.json()["externalId"] == "e1"  # left out of the PUT: unchanged
    row = await scim.row(email)
    assert row is not None
    assert row["role"] == "admin"
    assert row["external_id"] == "e1"


async def test_a_user_name_change_is_400_mutability_but_a_case_change_is_not(scim: Scim) -> None:
    email = new_email("same")
    user_id = (await create(scim, email))["id"]
    renamed = await scim.client.put(f"Users/{user_id}", json=user_body(new_email("other")))
    assert renamed.status_code == 400
    assert renamed.json()["scimType"] == "mutability"
    patched = await scim.client.patch(
        f"Users/{user_id}", json=patch_body({"op": "replace", "path": "userName", "value": new_email("x")})
    )
    assert patched.status_code == 400
    assert patched.json()["scimType"] == "mutability"
    upper = await scim.client.put(f"Users/{user_id}", json=user_body(email.upper()))
    assert upper.status_code == 200, upper.text
    row = await scim.row(email)
    assert row is not None
    assert row["email"] == email


async def test_deactivate_and_reactivate_keep_the_role(scim: Scim) -> None:
    email = new_email()
    user_id = (await create(scim, email, roles=[{"value": "admin"}]))["id"]
    off = await scim.client.patch(
        f"Users/{user_id}", json=patch_body({"op": "replace", "path": "active", "value": False})
    )
    assert off.json()["active"] is False
    on = await scim.client.patch(
        f"Users/{user_id}", json=patch_body({"op": "replace", "path": "active", "value": True})
    )
    assert on.status_code == 200, on.text
    assert on.json()["active"] is True
    assert on.json()["roles"][0]["value"] == "admin"
    again = await scim.client.patch(
        f"Users/{user_id}", json=patch_body({"op": "replace", "path": "active", "value": False})
    )
    assert again.json()["active"] is False  # the same body as before: a new command, applied
    row = await scim.row(email)
    assert row is not None
    assert row["is_active"] is False
    assert row["role"] == "admin"


async def test_a_password_is_stored_hashed_and_never_answered(scim: Scim) -> None:
    email = new_email()
    password = "correct horse battery staple 42"
    created = await scim.client.post("Users", json=user_body(email, password=password))
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    row = await scim.row(email)
    assert row is not None
    assert row["hashed_password"]
    assert row["hashed_password"].startswith("$argon2id$")
    responses = [
        created,
        await scim.client.get(f"Users/{user_id}"),
        await scim.client.get(f"Users/{user_id}", params={"attributes": "password"}),
        await scim.client.get("Users", params={"filter": f'userName eq "{email}"'}),
        await scim.client.put(f"Users/{user_id}", json=user_body(email, password=password)),
    ]
    for response in responses:
        assert response.status_code in (200, 201), response.text
        assert password not in response.text
        assert "password" not in response.text
    unchanged = await scim.row(email)
    assert unchanged is not None
    assert unchanged["hashed_password"] == row["hashed_password"]
    for key in await scim.scim_keys():
        value = await scim.redis.dump(key)
        assert value is None or password.encode() not in value


async def test_token_rotation_old_and_new_work_a_removed_one_is_refused(scim: Scim) -> None:
    email = new_email()
    user_id = (await create(scim, email))["id"]
    async with scim_client(scim.settings, NEW_TOKEN) as new:
        assert (await new.get(f"Users/{user_id}")).status_code == 200
    rotated = scim.settings.model_copy(update={"scim_tokens": SecretStr(NEW_TOKEN)})
    async with scim_client(rotated, OLD_TOKEN) as removed, scim_client(rotated, NEW_TOKEN) as kept:
        refused = await removed.get(f"Users/{user_id}")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Bearer realm="scim"'
        assert (await kept.get(f"Users/{user_id}")).status_code == 200


async def test_attributes_and_excluded_attributes(scim: Scim) -> None:
    email = new_email()
    user_id = (await create(scim, email))["id"]
    only = (await scim.client.get(f"Users/{user_id}", params={"attributes": "userName"})).json()
    assert set(only) == {"schemas", "id", "userName"}
    without = (
        await scim.client.get(f"Users/{user_id}", params={"excludedAttributes": "emails,roles"})
    ).json()
    assert "emails" not in without
    assert "roles" not in without
    assert without["userName"] == email


async def test_one_log_line_per_request_without_body_token_or_password(
    scim: Scim, caplog: pytest.LogCaptureFixture
) -> None:
    email = new_email("logged")
    password = "log-marker-Pa55word"
    with caplog.at_level(logging.INFO, logger="worker.scim"):
        created = await scim.client.post("Users", json=user_body(email, password=password))
        await scim.client.get("Users", params={"filter": f'userName eq "{email}"'})
    assert created.status_code == 201
    lines = [record for record in caplog.records if record.name == "worker.scim"]
    assert len(lines) == 2
    first = lines[0].event  # type: ignore[attr-defined]
    assert set(first) == {"event", "request_id", "method", "path", "route", "status", "duration_ms"}
    assert (first["method"], first["path"], first["status"]) == ("POST", "/scim/v2/Users", 201)
    assert first["request_id"] == created.headers["x-request-id"]
    assert lines[1].event["route"] == "/scim/v2/Users"  # type: ignore[attr-defined]
    text = caplog.text + " ".join(str(record.__dict__) for record in caplog.records)
    for secret in (password, OLD_TOKEN, email):
        assert secret not in text
