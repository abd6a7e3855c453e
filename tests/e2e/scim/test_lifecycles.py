"""Okta's and Entra ID's user lifecycles over HTTP, with the request bodies they document.

Each step is checked twice: the response, and the `users` row, which must hold exactly what the
resource says. Okta: https://developer.okta.com/docs/api/openapi/okta-scim/guides/scim-20 ;
Entra ID: https://learn.microsoft.com/entra/identity/app-provisioning/use-scim-to-provision-users-and-groups
(both with and without the aadOptscim062020 flag).
"""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.scim.checks import (
    ENTERPRISE_SCHEMA,
    USER_SCHEMA,
    assert_database_holds,
    find_by_user_name,
    new_email,
    patch,
    scim_error,
    scim_json,
    user_row,
)
from tests.support.scim import ScimStack

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("committing_sessions")]


async def test_okta_lifecycle(scim_stack: ScimStack, engine: AsyncEngine) -> None:
    email = new_email("okta")
    async with scim_stack.client() as client:
        # Okta looks the user up before creating it.
        assert (await find_by_user_name(client, email))["totalResults"] == 0
        created = scim_json(
            await client.post(
                "Users",
                json={
                    "schemas": [USER_SCHEMA],
                    "userName": email,
                    "name": {"givenName": "Test", "familyName": "User"},
                    "emails": [{"primary": True, "value": email, "type": "work"}],
                    "displayName": "Test User",
                    "locale": "en-US",
                    "externalId": "00ujl29u0le5T6Aj10h7",
                    "groups": [],
                    "active": True,
                },
            ),
            201,
        )
        assert created["userName"] == email
        assert created["active"] is True
        assert created["roles"] == [{"value": "member", "primary": True}]  # SCIM_DEFAULT_ROLE
        await assert_database_holds(engine, created)
        user_id = created["id"]

        found = await find_by_user_name(client, email.upper())  # userName matches case-insensitively
        assert found["totalResults"] == 1
        assert found["Resources"][0] == created

        # Okta's PUT: the whole resource (no password, no roles: the role stays as it is).
        put = {
            "schemas": [USER_SCHEMA],
            "id": user_id,
            "userName": email,
            "name": {"givenName": "Another", "familyName": "User"},
            "emails": [{"primary": True, "value": email, "type": "work"}],
            "externalId": "00ujl29u0le5T6Aj10h8",
            "active": True,
            "groups": [],
            "meta": {"resourceType": "User"},
        }
        updated = scim_json(await client.put(f"Users/{user_id}", json=put), 200)
        assert updated["id"] == user_id
        assert updated["externalId"] == "00ujl29u0le5T6Aj10h8"
        assert updated["roles"] == [{"value": "member", "primary": True}]
        await assert_database_holds(engine, updated)

        # Okta deactivates and reactivates with a PATCH of `active`, no path.
        for active in (False, True):
            changed = scim_json(
                await client.patch(
                    f"Users/{user_id}", json=patch({"op": "replace", "value": {"active": active}})
                ),
                200,
            )
            assert changed["id"] == user_id
            assert changed["active"] is active
            assert changed["roles"] == [{"value": "member", "primary": True}]
            await assert_database_holds(engine, changed)
            if not active:  # filters find inactive users too
                assert (await find_by_user_name(client, email))["Resources"] == [changed]

        # A role change: the whole resource again, now with roles.
        promoted = scim_json(
            await client.put(
                f"Users/{user_id}", json={**put, "roles": [{"value": "admin", "primary": True}]}
            ),
            200,
        )
        assert promoted["roles"] == [{"value": "admin", "primary": True}]
        assert promoted["active"] is True
        await assert_database_holds(engine, promoted)

        assert (await client.delete(f"Users/{user_id}")).status_code == 204
        assert await user_row(engine, int(user_id)) is None
        scim_error(await client.get(f"Users/{user_id}"), 404)
        assert (await find_by_user_name(client, email))["totalResults"] == 0


async def test_entra_lifecycle(scim_stack: ScimStack, engine: AsyncEngine) -> None:
    email = new_email("Entra.User")
    async with scim_stack.client() as client:
        assert (await find_by_user_name(client, email))["totalResults"] == 0
        created = scim_json(
            await client.post(
                "Users",
                json={
                    "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
                    "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
                    "userName": email,
                    "active": True,
                    "emails": [{"primary": True, "type": "work", "value": email}],
                    "meta": {"resourceType": "User"},
                    "name": {
                        "formatted": "givenName familyName",
                        "familyName": "familyName",
                        "givenName": "givenName",
                    },
                    "roles": [],
                },
            ),
            201,
        )
        assert created["userName"] == email
        assert created["externalId"] == "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"
        await assert_database_holds(engine, created)
        user_id = created["id"]
        found = await find_by_user_name(client, email.lower())
        assert [r["id"] for r in found["Resources"]] == [user_id]

        # Update: PascalCase ops, a path with a value filter (the address is the one it has), and
        # attributes that are accepted but not kept.
        updated = scim_json(
            await client.patch(
                f"Users/{user_id}",
                json=patch(
                    {"op": "Replace", "path": 'emails[type eq "work"].value', "value": email},
                    {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
                    {"op": "Add", "path": "externalId", "value": "entra-updated-external-id"},
                ),
            ),
            200,
        )
        assert updated["externalId"] == "entra-updated-external-id"
        await assert_database_holds(engine, updated)

        # Deactivate as Entra does without aadOptscim062020: "False" as a string.
        deactivated = scim_json(
            await client.patch(
                f"Users/{user_id}", json=patch({"op": "Replace", "path": "active", "value": "False"})
            ),
            200,
        )
        assert deactivated["active"] is False
        await assert_database_holds(engine, deactivated)
        assert (await find_by_user_name(client, email))["Resources"] == [deactivated]

        # Reactivate without a path, dotted names in the value (the flag's shape), "True" as a string.
        reactivated = scim_json(
            await client.patch(
                f"Users/{user_id}",
                json=patch(
                    {
                        "op": "Replace",
                        "value": {
                            "active": "True",
                            "name.givenName": "Reactivated",
                            f"{ENTERPRISE_SCHEMA}:manager": "0d0b2a4c",
                        },
                    }
                ),
            ),
            200,
        )
        assert reactivated["active"] is True
        assert reactivated["roles"] == created["roles"]  # reactivation leaves the role alone
        await assert_database_holds(engine, reactivated)

        # Role change as an app role assignment, with "add".
        promoted = scim_json(
            await client.patch(
                f"Users/{user_id}",
                json=patch(
                    {
                        "op": "Add",
                        "path": "roles",
                        "value": [
                            {"primary": True, "type": "WindowsAzureActiveDirectoryRole", "value": "viewer"}
                        ],
                    }
                ),
            ),
            200,
        )
        assert promoted["roles"] == [{"value": "viewer", "primary": True}]
        assert promoted["active"] is True
        await assert_database_holds(engine, promoted)

        assert (await client.delete(f"Users/{user_id}")).status_code == 204
        assert await user_row(engine, int(user_id)) is None
        scim_error(await client.get(f"Users/{user_id}"), 404)
