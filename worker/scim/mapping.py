"""What a SCIM User body asks of our user: the fields it names, checked (RFC 7643 §4.1).

Mapping (README, "SCIM"): `userName` is the email (an `emails` value the request carries is not
stored: the resource's only email is its userName); `active` is `is_active`; `roles[primary]` (or
the only role) is the role, one of admin, member, viewer; `externalId` is kept as sent; a
`password` is sealed and handed to the worker, never stored or answered in clear. Every other
attribute is accepted and not kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast, get_args

from pydantic import ValidationError
from pydantic_core import PydanticCustomError
from scim2_models import Context, EnterpriseUser, SCIMException, User

from worker.jobs.emails import normalize_email
from worker.jobs.identity import KeyRefused, identity_key
from worker.jobs.payloads import RoleName
from worker.scim.errors import bad_request, from_scim_exception, from_validation_error

UserResource = User[EnterpriseUser]
"""The resource type served at /Users: the core User schema and the enterprise extension."""

ROLES: tuple[str, ...] = get_args(RoleName)
EXTERNAL_ID_MAX_LENGTH = 255


@dataclass(frozen=True)
class UserChanges:
    """The fields a request names, each None where it names none (a password is never shown)."""

    user_name: str | None = None
    role: RoleName | None = None
    active: bool | None = None
    external_id: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def empty(self) -> bool:
        """True when the request changes none of the fields we keep."""
        return (
            self.role is None and self.active is None and self.external_id is None and self.password is None
        )

    @property
    def only_deactivates(self) -> bool:
        """True when the request's one change is `active: false` (a deactivate_user)."""
        return (
            self.active is False and self.role is None and self.external_id is None and self.password is None
        )


def as_boolean(value: Any, *, attribute: str = "active") -> bool:
    """A SCIM boolean, also as Entra sends it without `aadOptscim062020`: the strings "True"/"False"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower() == "true"
    raise bad_request("invalidValue", f"{attribute} must be true or false")


def checked_email(user_name: Any) -> str:
    """`userName` normalized as the worker stores emails; 400 invalidValue if it is not an email."""
    if not isinstance(user_name, str) or not user_name.strip():
        raise bad_request("invalidValue", "userName is required: the user's email address")
    try:
        email = normalize_email(user_name.strip())
        identity_key(email)
    except (PydanticCustomError, KeyRefused) as error:
        raise bad_request("invalidValue", f"userName must be an email address: {error}") from None
    return email


def same_person(user_name: str, key: str) -> bool:
    """True when `user_name` names the user whose identity key is `key` (any letter case)."""
    try:
        return identity_key(normalize_email(user_name.strip())) == key
    except (PydanticCustomError, KeyRefused):
        return False


def checked_role(value: Any) -> RoleName:
    """A role value; 400 invalidValue unless it is admin, member or viewer."""
    if not isinstance(value, str) or value not in ROLES:
        raise bad_request("invalidValue", f"a role must be one of {', '.join(ROLES)}")
    return cast(RoleName, value)


def role_of(roles: Any) -> RoleName | None:
    """The role a `roles` value names: the primary one, or the only one; None for an empty list."""
    entries: Sequence[Any] = roles if isinstance(roles, list) else [roles]
    values: list[tuple[Any, bool]] = []
    for entry in entries:
        if isinstance(entry, Mapping):
            primary = entry.get("primary")
            values.append(
                (entry.get("value"), primary is not None and as_boolean(primary, attribute="primary"))
            )
        elif hasattr(entry, "value"):
            values.append((entry.value, bool(getattr(entry, "primary", False))))
        else:
            values.append((entry, False))
    if not values:
        return None
    primaries = [value for value, primary in values if primary]
    if len(primaries) > 1:
        raise bad_request("invalidValue", "roles has more than one primary role")
    if primaries:
        return checked_role(primaries[0])
    if len(values) == 1:
        return checked_role(values[0][0])
    raise bad_request("invalidValue", "roles holds several roles and none is primary: mark one primary")


def checked_external_id(value: Any) -> str:
    """An externalId: a non-empty string of at most 255 characters."""
    if not isinstance(value, str) or not value or len(value) > EXTERNAL_ID_MAX_LENGTH:
        raise bad_request(
            "invalidValue", f"externalId must be a string of 1 to {EXTERNAL_ID_MAX_LENGTH} characters"
        )
    return value


def checked_password(value: Any) -> str:
    """A password: a non-empty string."""
    if not isinstance(value, str) or not value:
        raise bad_request("invalidValue", "password must be a non-empty string")
    return value


def parse_user(body: Any, context: Context) -> UserResource:
    """Validate a User body with scim2-models (schemas, types, mutability); 400 saying what is wrong."""
    if not isinstance(body, dict):
        raise bad_request("invalidSyntax", "the request body must be a JSON object (a SCIM User)")
    if isinstance(body.get("active"), str):
        body = {**body, "active": as_boolean(body["active"])}
    try:
        return UserResource.model_validate(body, scim_ctx=context)
    except ValidationError as error:
        raise from_validation_error(error) from None
    except SCIMException as error:
        raise from_scim_exception(error) from None


def changes_of_resource(body: Any, context: Context) -> UserChanges:
    """The fields a whole User (POST or PUT) sets; those it leaves out stay as they are."""
    user = parse_user(body, context)
    sent = cast(dict[str, Any], body)
    return UserChanges(
        user_name=checked_email(user.user_name),
        role=role_of(sent["roles"]) if sent.get("roles") else None,
        active=user.active if "active" in sent and user.active is not None else None,
        external_id=checked_external_id(user.external_id) if user.external_id is not None else None,
        password=checked_password(user.password) if user.password is not None else None,
    )
