"""What the database holds for a SCIM resource, and requests as identity providers send them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.ids import RUN_ID

SCIM_JSON = "application/scim+json"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


def new_email(label: str) -> str:
    """An address no other test uses."""
    return f"{label}-t{RUN_ID}-{uuid.uuid4().hex[:10]}@example.com"


async def user_row(engine: AsyncEngine, user_id: int) -> dict[str, Any] | None:
    """The `users` row with this id, or None."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT id, email, role, is_active, external_id, hashed_password, created_at, updated_at "
                    "FROM users WHERE id = :id"
                ),
                {"id": user_id},
            )
        ).first()
    return None if row is None else dict(row._mapping)


async def assert_database_holds(engine: AsyncEngine, resource: dict[str, Any]) -> dict[str, Any]:
    """The row behind `resource` says exactly what the resource says (and nothing about a password)."""
    assert "password" not in resource
    row = await user_row(engine, int(resource["id"]))
    assert row is not None, f"no users row for resource {resource['id']}"
    roles = resource.get("roles") or []
    primary = [r["value"] for r in roles if r.get("primary")] or [r["value"] for r in roles]
    assert {
        "userName": resource["userName"],
        "active": resource["active"],
        "role": primary[0] if primary else None,
        "externalId": resource.get("externalId"),
        "created": datetime.fromisoformat(resource["meta"]["created"]),
        "lastModified": datetime.fromisoformat(resource["meta"]["lastModified"]),
    } == {
        "userName": row["email"],
        "active": row["is_active"],
        "role": str(getattr(row["role"], "value", row["role"])),
        "externalId": row["external_id"],
        "created": row["created_at"],
        "lastModified": row["updated_at"],
    }
    assert resource["meta"]["resourceType"] == "User"
    assert resource["meta"]["location"].endswith(f"/scim/v2/Users/{resource['id']}")
    return row


def scim_json(response: httpx.Response, status: int) -> dict[str, Any]:
    """The SCIM body of a response that must have `status`."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith(SCIM_JSON)
    body: dict[str, Any] = response.json()
    return body


def scim_error(response: httpx.Response, status: int, scim_type: str | None = None) -> dict[str, Any]:
    """The SCIM error of a response that must have `status` (and `scimType`)."""
    body = scim_json(response, status)
    assert body["schemas"] == [ERROR_SCHEMA]
    assert body["status"] == str(status)
    if scim_type is not None:
        assert body.get("scimType") == scim_type, body
    return body


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    """A PatchOp body."""
    return {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}


async def find_by_user_name(client: httpx.AsyncClient, user_name: str) -> dict[str, Any]:
    """GET /Users?filter=userName eq "…" as Okta and Entra send it before every create."""
    response = await client.get(
        "Users", params={"filter": f'userName eq "{user_name}"', "startIndex": "1", "count": "100"}
    )
    body = scim_json(response, 200)
    assert body["schemas"] == [LIST_SCHEMA]
    return body
