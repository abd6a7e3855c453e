"""A `users` row as a SCIM User resource (scim2-models renders it; a password never is).

`id` is str(users.id): stable while the person stays provisioned (updates, deactivation,
reactivation); a delete removes the row, so a later create gets a new id. `meta.created` and
`meta.lastModified` are the row's created_at and updated_at. No `meta.version`: ETags are not
supported (the version check could not be atomic with the write, which happens inside the job).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from scim2_models import Context, Email, Meta, ResponseParameters, Role

from worker.db.models import User
from worker.scim import BASE_PATH
from worker.scim.errors import from_validation_error
from worker.scim.mapping import UserResource

USERS_PATH = f"{BASE_PATH}/Users"


def location(base_url: str, user_id: int) -> str:
    """The resource's URL: <base>/scim/v2/Users/<id>."""
    return f"{base_url.rstrip('/')}{USERS_PATH}/{user_id}"


def user_model(user: User, base_url: str) -> UserResource:
    """The scim2-models User for a `users` row."""
    return UserResource(
        id=str(user.id),
        external_id=user.external_id,
        user_name=user.email,
        active=user.is_active,
        emails=[Email(value=user.email, primary=True, type="work")],
        roles=[Role(value=str(user.role.value), primary=True)],
        meta=Meta(
            resource_type="User",
            created=user.created_at,
            last_modified=user.updated_at,
            location=location(base_url, user.id),
        ),
    )


def response_parameters(
    attributes: str | None, excluded: str | None
) -> ResponseParameters[UserResource] | None:
    """The `attributes` / `excludedAttributes` query parameters (RFC 7644 §3.9), checked."""
    if not attributes and not excluded:
        return None
    try:
        return ResponseParameters[UserResource](
            attributes=attributes or None, excluded_attributes=excluded or None
        )
    except ValidationError as error:
        raise from_validation_error(error) from None


def render(
    user: User, base_url: str, parameters: ResponseParameters[UserResource] | None = None
) -> dict[str, Any]:
    """The resource as a JSON document."""
    return user_model(user, base_url).model_dump(
        scim_ctx=Context.RESOURCE_QUERY_RESPONSE, response_parameters=parameters
    )
