"""PATCH bodies as the fields they change: RFC 7644, Okta, and Entra with and without aadOptscim062020
(bodies from Microsoft's "Known issues … SCIM 2.0 protocol compliance" page)."""

from __future__ import annotations

from typing import Any

import pytest

from worker.scim.errors import ScimError
from worker.scim.mapping import UserChanges
from worker.scim.patching import patch_changes

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def changes(*operations: dict[str, Any]) -> UserChanges:
    return patch_changes({"schemas": [PATCH], "Operations": list(operations)}, default_role="member")


def test_entra_disable_without_the_flag() -> None:
    assert changes({"op": "Replace", "path": "active", "value": "False"}) == UserChanges(active=False)


def test_entra_disable_with_the_flag() -> None:
    assert changes({"op": "replace", "path": "active", "value": False}) == UserChanges(active=False)


def test_entra_add_single_value_attribute_either_way_changes_nothing_kept() -> None:
    assert changes({"op": "Add", "path": "nickName", "value": "Babs"}).empty
    assert changes({"op": "add", "path": "nickName", "value": "Babs"}).empty


def test_entra_replace_multiple_attributes_without_the_flag() -> None:
    found = changes(
        {"op": "Replace", "path": "displayName", "value": "Pvlo"},
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "TestBcwqnm@test.microsoft.com"},
        {"op": "Replace", "path": "name.givenName", "value": "Gtfd"},
        {"op": "Replace", "path": "name.familyName", "value": "Pkqf"},
        {"op": "Replace", "path": "externalId", "value": "Eqpj"},
        {"op": "Replace", "path": f"{ENTERPRISE}:employeeNumber", "value": "Eqpj"},
    )
    assert found == UserChanges(external_id="Eqpj")


def test_entra_replace_multiple_attributes_with_the_flag_no_path_and_dotted_keys() -> None:
    found = changes(
        {"op": "replace", "path": 'emails[type eq "work"].value', "value": "TestMhvaes@test.microsoft.com"},
        {
            "op": "replace",
            "value": {
                "displayName": "Bjfe",
                "name.givenName": "Kkom",
                "name.familyName": "Unua",
                f"{ENTERPRISE}:employeeNumber": "Aklq",
                f"{ENTERPRISE}:manager": "2819c223",
                "active": "True",
                "externalId": "e-9",
            },
        },
    )
    assert found == UserChanges(active=True, external_id="e-9")


def test_entra_app_role_paths() -> None:
    assert changes({"op": "Add", "path": 'roles[primary eq "True"].value', "value": "admin"}).role == "admin"
    assert (
        changes({"op": "Replace", "path": "roles", "value": [{"value": "viewer", "primary": "True"}]}).role
        == "viewer"
    )
    assert changes({"op": "Remove", "path": "roles"}).role == "member"


def test_okta_patches() -> None:
    assert changes({"op": "replace", "value": {"active": False}}) == UserChanges(active=False)
    password = changes({"op": "replace", "value": {"password": "n3w-Passw0rd"}})
    assert password.password == "n3w-Passw0rd"
    assert "n3w-Passw0rd" not in repr(password)


def test_a_later_operation_wins_and_user_name_is_reported() -> None:
    found = changes(
        {"op": "replace", "path": "active", "value": False},
        {"op": "replace", "path": "active", "value": True},
        {
            "op": "replace",
            "path": "urn:ietf:params:scim:schemas:core:2.0:User:userName",
            "value": "b@example.com",
        },
    )
    assert found == UserChanges(active=True, user_name="b@example.com")


def test_only_deactivates_and_empty() -> None:
    assert changes({"op": "replace", "path": "active", "value": False}).only_deactivates
    assert not changes({"op": "replace", "value": {"active": False, "externalId": "x"}}).only_deactivates
    assert changes({"op": "replace", "value": {"schemas": []}}).empty


@pytest.mark.parametrize(
    ("body", "scim_type"),
    [
        ({"schemas": [PATCH]}, "invalidValue"),
        ({"schemas": [PATCH], "Operations": []}, "invalidValue"),
        (
            {"schemas": [PATCH], "Operations": [{"op": "move", "path": "active", "value": True}]},
            "invalidValue",
        ),
        ({"schemas": [PATCH], "Operations": [{"op": "remove"}]}, "noTarget"),
        ({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "bogus", "value": 1}]}, "invalidPath"),
        (
            {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": "yes"}]},
            "invalidValue",
        ),
        (
            {
                "schemas": [PATCH],
                "Operations": [{"op": "replace", "path": "roles", "value": [{"value": "root"}]}],
            },
            "invalidValue",
        ),
        ({"schemas": [PATCH], "Operations": [{"op": "remove", "path": "externalId"}]}, "mutability"),
        ({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "id", "value": "5"}]}, "mutability"),
        ({"schemas": [PATCH], "Operations": [{"op": "replace", "value": 5}]}, "invalidValue"),
        ([1], "invalidSyntax"),
    ],
)
def test_bad_patches(body: Any, scim_type: str) -> None:
    with pytest.raises(ScimError) as raised:
        patch_changes(body, default_role="member")
    assert raised.value.status == 400
    assert raised.value.scim_type == scim_type
