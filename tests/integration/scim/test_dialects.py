"""Identity providers' own request bodies: Okta's and Microsoft Entra ID's (with and without the
`aadOptscim062020` flag), as their documentation shows them, through a whole lifecycle."""

from __future__ import annotations

from typing import Any

from tests.integration.scim.conftest import PATCH_SCHEMA, USER_SCHEMA, Scim, new_email

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


async def assert_matches_row(scim: Scim, resource: dict[str, Any]) -> None:
    """The database holds exactly what the resource says."""
    row = await scim.row(resource["userName"])
    assert row is not None
    assert resource["id"] == str(row["id"])
    assert resource["active"] is row["is_active"]
    assert resource["roles"] == [{"value": row["role"], "primary": True}]
    assert resource.get("externalId") == row["external_id"]


async def test_okta_lifecycle(scim: Scim) -> None:
    email = new_email("okta")
    # Okta looks the user up before every create.
    lookup = await scim.client.get(
        "Users", params={"filter": f'userName eq "{email}"', "startIndex": 1, "count": 100}
    )
    assert lookup.status_code == 200
    assert lookup.json()["totalResults"] == 0
    okta_user = {
        "schemas": [USER_SCHEMA],
        "userName": email,
        "name": {"givenName": "John", "familyName": "Doe"},
        "emails": [{"primary": True, "value": email, "type": "work"}],
        "displayName": "John Doe",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": True,
    }
    created = await scim.client.post("Users", json=okta_user)
    assert created.status_code == 201, created.text
    resource = created.json()
    await assert_matches_row(scim, resource)
    user_id = resource["id"]
    found = await scim.client.get("Users", params={"filter": f'userName eq "{email.upper()}"'})
    assert [user["id"] for user in found.json()["Resources"]] == [user_id]

    # PUT of the whole resource, as Okta sends updates, with a role now.
    whole = {**resource, "name": {"givenName": "Johnny", "familyName": "Doe"}, "roles": [{"value": "admin"}]}
    updated = await scim.client.put(f"Users/{user_id}", json=whole)
    assert updated.status_code == 200, updated.text
    await assert_matches_row(scim, updated.json())
    assert updated.json()["roles"][0]["value"] == "admin"

    deactivate = {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "value": {"active": False}}]}
    off = await scim.client.patch(f"Users/{user_id}", json=deactivate)
    assert off.status_code == 200
    assert off.json()["active"] is False
    await assert_matches_row(scim, off.json())

    reactivate = {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "value": {"active": True}}]}
    on = await scim.client.patch(f"Users/{user_id}", json=reactivate)
    assert on.json()["active"] is True
    assert on.json()["roles"][0]["value"] == "admin"
    await assert_matches_row(scim, on.json())

    role = await scim.client.put(f"Users/{user_id}", json={**on.json(), "roles": [{"value": "viewer"}]})
    assert role.json()["roles"][0]["value"] == "viewer"
    await assert_matches_row(scim, role.json())

    assert (await scim.client.delete(f"Users/{user_id}")).status_code == 204
    assert (await scim.client.get(f"Users/{user_id}")).status_code == 404
    assert await scim.row(email) is None


def entra_create(email: str) -> dict[str, Any]:
    """Microsoft's documented create request, its userName an email (ours is the email)."""
    return {
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": email,
        "active": True,
        "emails": [
            {
                "primary": True,
                "type": "work",
                "value": "Test_User_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com",
            }
        ],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": [],
    }


async def test_entra_lifecycle_without_the_flag(scim: Scim) -> None:
    await entra_lifecycle(scim, flag=False)


async def test_entra_lifecycle_with_aad_opt_scim062020(scim: Scim) -> None:
    await entra_lifecycle(scim, flag=True)


async def entra_lifecycle(scim: Scim, *, flag: bool) -> None:
    email = new_email("Entra")
    lookup = await scim.client.get("Users", params={"filter": f'userName eq "{email}"'})
    assert lookup.json()["totalResults"] == 0
    created = await scim.client.post("Users", json=entra_create(email))
    assert created.status_code == 201, created.text
    resource = created.json()
    assert resource["userName"] == email
    assert resource["emails"][0]["value"] == email
    await assert_matches_row(scim, resource)
    user_id = resource["id"]
    by_external = await scim.client.get(
        "Users", params={"filter": 'externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"'}
    )
    assert user_id in [user["id"] for user in by_external.json()["Resources"]]

    # "Requests to replace multiple attributes", as documented for each behaviour.
    if flag:
        update = [
            {
                "op": "replace",
                "path": 'emails[type eq "work"].value',
                "value": "TestMhvaes@test.microsoft.com",
            },
            {
                "op": "replace",
                "value": {
                    "displayName": "Bjfe",
                    "name.givenName": "Kkom",
                    "name.familyName": "Unua",
                    f"{ENTERPRISE}:employeeNumber": "Aklq",
                },
            },
            {"op": "replace", "value": {"externalId": "Eqpj"}},
        ]
    else:
        update = [
            {"op": "Replace", "path": "displayName", "value": "Pvlo"},
            {
                "op": "Replace",
                "path": 'emails[type eq "work"].value',
                "value": "TestBcwqnm@test.microsoft.com",
            },
            {"op": "Replace", "path": "name.givenName", "value": "Gtfd"},
            {"op": "Replace", "path": "name.familyName", "value": "Pkqf"},
            {"op": "Replace", "path": "externalId", "value": "Eqpj"},
            {"op": "Replace", "path": f"{ENTERPRISE}:employeeNumber", "value": "Eqpj"},
        ]
    updated = await scim.client.patch(
        f"Users/{user_id}", json={"schemas": [PATCH_SCHEMA], "Operations": update}
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["externalId"] == "Eqpj"
    assert updated.json()["emails"] == [{"value": email, "type": "work", "primary": True}]
    await assert_matches_row(scim, updated.json())

    # Role through Entra's app-role path; Add and Replace used interchangeably.
    role_op = "Add" if not flag else "add"
    role = await scim.client.patch(
        f"Users/{user_id}",
        json={
            "schemas": [PATCH_SCHEMA],
            "Operations": [{"op": role_op, "path": 'roles[primary eq "True"].value', "value": "admin"}],
        },
    )
    assert role.status_code == 200, role.text
    assert role.json()["roles"][0]["value"] == "admin"
    await assert_matches_row(scim, role.json())

    # "Requests made to disable users".
    disable_value: Any = False if flag else "False"
    disable_op = "replace" if flag else "Replace"
    off = await scim.client.patch(
        f"Users/{user_id}",
        json={
            "schemas": [PATCH_SCHEMA],
            "Operations": [{"op": disable_op, "path": "active", "value": disable_value}],
        },
    )
    assert off.status_code == 200, off.text
    assert off.json()["active"] is False
    await assert_matches_row(scim, off.json())

    enable_value: Any = True if flag else "True"
    on = await scim.client.patch(
        f"Users/{user_id}",
        json={
            "schemas": [PATCH_SCHEMA],
            "Operations": [{"op": disable_op, "path": "active", "value": enable_value}],
        },
    )
    assert on.json()["active"] is True
    assert on.json()["roles"][0]["value"] == "admin"
    await assert_matches_row(scim, on.json())

    # "Requests made to add a single-value string attribute": accepted, not kept.
    nick = await scim.client.patch(
        f"Users/{user_id}",
        json={
            "schemas": [PATCH_SCHEMA],
            "Operations": [{"op": "Add" if not flag else "add", "path": "nickName", "value": "Babs"}],
        },
    )
    assert nick.status_code == 200, nick.text
    await assert_matches_row(scim, nick.json())

    assert (await scim.client.delete(f"Users/{user_id}")).status_code == 204
    assert (await scim.client.get(f"Users/{user_id}")).status_code == 404


async def test_entra_s_documented_user_name_without_a_domain_is_refused_with_a_reason(scim: Scim) -> None:
    body = entra_create("Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1")
    response = await scim.client.post("Users", json=body)
    assert response.status_code == 400
    assert response.json()["scimType"] == "invalidValue"
    assert "email" in response.json()["detail"]
    assert await scim.user_count() == 0
