"""PATCH (RFC 7644 §3.5.2) as the fields it changes, in the dialects identity providers send.

scim2-models validates the message and parses every path; this module reads the operations in
order, a later one winning for the same field. Accepted on top of the RFC:

- operation names in any case (`Replace`, `Add`, Entra);
- `"active": "False"` / `"True"` as strings (Entra without `aadOptscim062020`);
- an operation without `path` whose value holds attribute paths as keys, dotted or filtered
  (`"name.givenName"`, `"emails[type eq \"work\"].value"`, extension URNs): each key is read as
  the path of an operation of its own;
- `roles[primary eq "True"].value` and `emails[type eq "work"].value` paths.

`add` and `replace` are one thing for single-valued fields; the role, a single value here, is
replaced by an `add` as well. Removing the roles gives the default role; `active`, `userName`,
`externalId` and `password` cannot be removed (400). Attributes we do not keep are accepted and
ignored, and so is an `emails` value (the resource's email is its userName).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pydantic import ValidationError
from scim2_models import Context, PatchOp, PatchOperation, SCIMException
from scim2_models.path import AttrPath, Comparison, Present, ValuePath

from worker.jobs.payloads import RoleName
from worker.scim.errors import bad_request, from_scim_exception, from_validation_error
from worker.scim.mapping import (
    UserChanges,
    UserResource,
    as_boolean,
    checked_external_id,
    checked_password,
    checked_role,
    role_of,
)

PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"


def patch_changes(body: Any, *, default_role: RoleName) -> UserChanges:
    """The fields a PATCH body changes; 400 with its scimType for a body that is not one."""
    message = _parse(_split_unpathed(body))
    changes = UserChanges()
    for operation in message.operations or ():
        changes = _apply(changes, operation, default_role=default_role)
    return changes


def _split_unpathed(body: Any) -> Any:
    """Each key of an operation without path becomes an operation with that key as its path."""
    if not isinstance(body, dict):
        raise bad_request("invalidSyntax", "the request body must be a JSON object (a SCIM PatchOp)")
    operations = body.get("Operations", body.get("operations"))
    if not isinstance(operations, list):
        return body
    split: list[Any] = []
    for operation in operations:
        if (
            isinstance(operation, dict)
            and operation.get("path") is None
            and isinstance(operation.get("value"), dict)
        ):
            for key, value in operation["value"].items():
                if key.lower() == "schemas":
                    continue
                split.append({"op": operation.get("op"), "path": key, "value": value})
        else:
            split.append(operation)
    if not split:  # a value holding nothing but `schemas`: nothing to change
        return {**body, "Operations": operations}
    return {key: value for key, value in body.items() if key not in {"Operations", "operations"}} | {
        "Operations": split
    }


def _parse(body: Any) -> PatchOp[UserResource]:
    try:
        return PatchOp[UserResource].model_validate(body, scim_ctx=Context.RESOURCE_PATCH_REQUEST)
    except ValidationError as error:
        raise from_validation_error(error) from None
    except SCIMException as error:
        raise from_scim_exception(error) from None


def _apply(changes: UserChanges, operation: PatchOperation[Any], *, default_role: RoleName) -> UserChanges:
    removal = operation.op == PatchOperation.Op.remove
    value = operation.value
    node = operation.path.ast if operation.path is not None and str(operation.path) else None
    if node is None:
        # No path left after splitting: a value that is not an object (or an empty one).
        if value is None or isinstance(value, dict):
            return changes  # an object holding nothing but `schemas`
        raise bad_request(
            "invalidValue", "an operation without path takes an object of attributes as its value"
        )
    if isinstance(node, Comparison | Present):
        raise bad_request("invalidPath", f"{operation.path} is a filter, not an attribute path")
    attr_path = node if isinstance(node, AttrPath) else node.attr_path
    if attr_path.uri is not None and attr_path.uri.lower() != USER_SCHEMA.lower():
        return changes  # an extension attribute (enterprise: manager, employeeNumber…): not kept
    attribute = attr_path.attr.lower()
    sub_attr = (node.sub_attr if isinstance(node, ValuePath) else attr_path.sub_attr) or None
    selected = isinstance(node, ValuePath)

    if attribute == "active" and sub_attr is None and not selected:
        if removal:
            raise bad_request("mutability", "active cannot be removed: replace it with true or false")
        return replace(changes, active=as_boolean(value))
    if attribute == "username" and sub_attr is None and not selected:
        if removal or not isinstance(value, str):
            raise bad_request("mutability", "userName cannot be removed")
        return replace(changes, user_name=value)
    if attribute == "externalid" and sub_attr is None and not selected:
        if removal:
            raise bad_request(
                "mutability", "externalId cannot be removed here: replace it with another value"
            )
        return replace(changes, external_id=checked_external_id(value))
    if attribute == "password" and sub_attr is None and not selected:
        if removal:
            raise bad_request("mutability", "password cannot be removed: replace it")
        return replace(changes, password=checked_password(value))
    if attribute == "roles":
        if removal:
            return replace(changes, role=default_role)
        if sub_attr is not None:
            if sub_attr.lower() != "value":
                return changes  # roles[…].display, .type, .primary: not kept
            return replace(changes, role=checked_role(value))
        role = role_of(value)
        return replace(changes, role=role) if role is not None else changes
    return changes  # name, displayName, emails, … : accepted, not kept
