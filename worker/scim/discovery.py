"""Discovery (RFC 7644 §4): /ServiceProviderConfig, /ResourceTypes and /Schemas, from scim2-models.

What is advertised is what the service does: PATCH yes; bulk, sorting and ETags no (the version
check could not be atomic with the write, done inside the job); filters up to MAX_RESULTS per page;
password changes yes (sealed for the worker); OAuth bearer tokens.
"""

from __future__ import annotations

from typing import Any

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    EnterpriseUser,
    ETag,
    Filter,
    ListResponse,
    Meta,
    Patch,
    ResourceType,
    Schema,
    ServiceProviderConfig,
    Sort,
    User,
)

from worker.scim import BASE_PATH
from worker.scim.mapping import UserResource

MAX_RESULTS = 1000
"""The largest page (`count`) a list request gets."""
DEFAULT_COUNT = 100
"""The page size when a list request gives no `count`."""


def service_provider_config(base_url: str) -> dict[str, Any]:
    """The ServiceProviderConfig document."""
    config = ServiceProviderConfig(
        documentation_uri=None,
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=True),
        sort=Sort(supported=False),
        etag=ETag(supported=False),
        authentication_schemes=[
            AuthenticationScheme(
                type=AuthenticationScheme.Type.oauthbearertoken,
                name="OAuth Bearer Token",
                description="A bearer token from SCIM_TOKENS, in the Authorization header",
                primary=True,
            )
        ],
        meta=Meta(resource_type="ServiceProviderConfig", location=_url(base_url, "/ServiceProviderConfig")),
    )
    return config.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)


def _url(base_url: str, path: str) -> str:
    return f"{base_url.rstrip('/')}{BASE_PATH}{path}"


def resource_types(base_url: str) -> list[ResourceType]:
    """The one resource type served: User, with the enterprise extension."""
    user = ResourceType.from_resource(UserResource)
    user.meta = Meta(resource_type="ResourceType", location=_url(base_url, f"/ResourceTypes/{user.id}"))
    return [user]


def schemas(base_url: str) -> list[Schema]:
    """The schemas of the resources served."""
    found = [User.to_schema(), EnterpriseUser.to_schema()]
    for schema in found:
        schema.meta = Meta(resource_type="Schema", location=_url(base_url, f"/Schemas/{schema.id}"))
    return found


def listed(items: list[ResourceType] | list[Schema]) -> dict[str, Any]:
    """A ListResponse of discovery resources (all of them, one page)."""
    response: ListResponse[Any] = ListResponse[ResourceType | Schema](
        total_results=len(items), start_index=1, items_per_page=len(items), resources=items
    )
    return response.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)


def one(item: ResourceType | Schema) -> dict[str, Any]:
    """A single discovery resource."""
    return item.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
