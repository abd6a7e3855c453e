"""Discovery endpoints and /healthz."""

from __future__ import annotations

import httpx

from tests.integration.scim.conftest import SCIM, USER_SCHEMA, Scim


async def test_service_provider_config_says_what_the_service_does(scim: Scim) -> None:
    response = await scim.client.get("ServiceProviderConfig")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(SCIM)
    config = response.json()
    assert config["patch"]["supported"] is True
    assert config["etag"]["supported"] is False
    assert config["bulk"]["supported"] is False
    assert config["sort"]["supported"] is False
    assert config["filter"] == {"supported": True, "maxResults": 1000}
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"


async def test_resource_types_and_schemas(scim: Scim) -> None:
    types = (await scim.client.get("ResourceTypes")).json()
    assert types["totalResults"] == 1
    assert types["Resources"][0]["endpoint"] == "/Users"
    assert (await scim.client.get("ResourceTypes/User")).json()["schema"] == USER_SCHEMA
    assert (await scim.client.get("ResourceTypes/Group")).status_code == 404
    schemas = (await scim.client.get("Schemas")).json()
    ids = [schema["id"] for schema in schemas["Resources"]]
    assert USER_SCHEMA in ids
    user_schema = (await scim.client.get(f"Schemas/{USER_SCHEMA}")).json()
    password = next(a for a in user_schema["attributes"] if a["name"] == "password")
    assert password["returned"] == "never"
    assert (await scim.client.get("Schemas/urn:nothing")).status_code == 404


async def test_healthz_needs_no_token_and_answers_when_database_and_redis_do(scim: Scim) -> None:
    transport = scim.client._transport  # the same app
    async with httpx.AsyncClient(transport=transport, base_url="http://scim.test") as anonymous:
        response = await anonymous.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"database": True, "redis": True, "ok": True}


async def test_every_answer_carries_a_request_id(scim: Scim) -> None:
    response = await scim.client.get("Users")
    assert len(response.headers["x-request-id"]) == 32
