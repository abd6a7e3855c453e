"""SCIM error documents, body mapping, and the rendering of a users row."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from scim2_models import Context

from worker.db.models import Role, User
from worker.scim.errors import ScimError, error_response
from worker.scim.mapping import as_boolean, changes_of_resource, role_of, same_person
from worker.scim.resources import render, response_parameters

USER = "urn:ietf:params:scim:schemas:core:2.0:User"


def test_error_response_is_the_scim_error_schema() -> None:
    response = error_response(ScimError(400, "bad filter", scim_type="invalidFilter", headers={"X-A": "1"}))
    assert response.status_code == 400
    assert response.media_type == "application/scim+json"
    assert response.headers["x-a"] == "1"
    assert json.loads(response.body) == {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": "400",
        "scimType": "invalidFilter",
        "detail": "bad filter",
    }


def row(**overrides: object) -> User:
    values: dict[str, object] = {
        "id": 7,
        "key": "ann@example.com",
        "email": "Ann@example.com",
        "role": Role.VIEWER,
        "is_active": False,
        "external_id": "ext",
        "hashed_password": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
        "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "updated_at": datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC),
    }
    values.update(overrides)
    return User(**values)


def test_render_a_row() -> None:
    rendered = render(row(), "https://idp.example/")
    assert rendered == {
        "schemas": [USER],
        "id": "7",
        "externalId": "ext",
        "meta": {
            "resourceType": "User",
            "created": "2026-01-02T03:04:05Z",
            "lastModified": "2026-02-03T04:05:06Z",
            "location": "https://idp.example/scim/v2/Users/7",
        },
        "userName": "Ann@example.com",
        "active": False,
        "emails": [{"value": "Ann@example.com", "type": "work", "primary": True}],
        "roles": [{"value": "viewer", "primary": True}],
    }
    assert "argon2" not in json.dumps(rendered)


def test_render_without_external_id_and_with_attributes() -> None:
    rendered = render(row(external_id=None), "http://x", response_parameters("userName,active", None))
    assert rendered == {"schemas": [USER], "id": "7", "userName": "Ann@example.com", "active": False}
    assert "password" not in render(row(), "http://x", response_parameters("password", None))


def test_bad_response_parameters_are_400() -> None:
    with pytest.raises(ScimError) as raised:
        response_parameters("userName", "active")
    assert raised.value.status == 400


def test_changes_of_a_whole_resource() -> None:
    found = changes_of_resource(
        {
            "schemas": [USER],
            "userName": "Ann@Example.com",
            "active": "False",
            "externalId": "x",
            "roles": [{"value": "viewer", "primary": True}, {"value": "admin"}],
            "password": "pw",
        },
        Context.RESOURCE_CREATION_REQUEST,
    )
    assert (found.user_name, found.role, found.active, found.external_id, found.password) == (
        "Ann@example.com",
        "viewer",
        False,
        "x",
        "pw",
    )
    bare = changes_of_resource(
        {"schemas": [USER], "userName": "b@example.com", "roles": []}, Context.RESOURCE_CREATION_REQUEST
    )
    assert bare.role is None
    assert bare.active is None
    assert bare.empty


@pytest.mark.parametrize(
    "roles",
    [
        [{"value": "root"}],
        [{"value": "admin"}, {"value": "viewer"}],
        [{"value": "admin", "primary": True}, {"value": "viewer", "primary": True}],
    ],
)
def test_roles_that_name_no_single_valid_role_are_refused(roles: object) -> None:
    with pytest.raises(ScimError) as raised:
        role_of(roles)
    assert raised.value.scim_type == "invalidValue"


def test_booleans_and_identity() -> None:
    assert as_boolean("False") is False
    assert as_boolean("TRUE") is True
    assert as_boolean(True) is True
    with pytest.raises(ScimError):
        as_boolean("no")
    assert same_person("ANN@Example.com", "ann@example.com")
    assert not same_person("bob@example.com", "ann@example.com")
    assert not same_person("not an email", "ann@example.com")
