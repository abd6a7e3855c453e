"""The job contract's validation: strict, closed, and never echoing inputs."""

from __future__ import annotations

import pytest

from worker.errors import InvalidPayload
from worker.payloads import PAYLOADS, DeleteUser, ProvisionUser, SetUserRole, parse_payload
from worker.security import hash_password


def test_valid_payload_is_parsed_and_domain_lowered() -> None:
    password_hash = hash_password("pw-for-test")
    command = parse_payload(
        ProvisionUser,
        "provision_user",
        (),
        {"email": "Ada@Example.COM", "role": "admin", "password_hash": password_hash},
    )
    assert (command.email, command.role, command.password_hash) == ("Ada@example.com", "admin", password_hash)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"email": "a@example.com", "role": "admin", "is_admin": True},
            "is_admin: Extra inputs are not permitted",
        ),
        ({"email": "a@example.com", "role": 1}, "role: Input should be 'admin', 'member' or 'viewer'"),
        ({"email": "a@example.com", "role": "Admin"}, "role: Input should be 'admin', 'member' or 'viewer'"),
        ({"email": ["a@example.com"], "role": "admin"}, "email: Input should be a valid string"),
        ({"role": "admin"}, "email: Field required"),
        ({"email": "a" * 400 + "@example.com", "role": "admin"}, "email: value is not a valid email address"),
        (
            {"email": "a@example.com", "role": "admin", "password_hash": 12},
            "password_hash: Input should be a valid string",
        ),
    ],
)
def test_bad_payloads_name_the_field_and_the_problem(kwargs: dict[str, object], expected: str) -> None:
    with pytest.raises(InvalidPayload) as error:
        parse_payload(ProvisionUser, "provision_user", (), kwargs)
    assert str(error.value).startswith("provision_user: invalid payload: ")
    assert expected in str(error.value)


@pytest.mark.parametrize(
    "value",
    [
        "correct horse battery staple",
        "$argon2i$v=19$m=65536,t=3,p=4$c29tZXNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g",
        "$argon2id$v=19$m=65536,t=3,p=4$$",
        "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$aGFzaA",  # hash too short
        "$2b$12$abcdefghijklmnopqrstuuJ7Yq5bS9g2Zf0jK9zq9i3Q7cOqz1p6e",  # bcrypt
        hash_password("x") + "\n",
    ],
)
def test_anything_but_an_argon2id_hash_is_refused_without_echoing_it(value: str) -> None:
    with pytest.raises(InvalidPayload, match="password_hash: must be an argon2id PHC string") as error:
        parse_payload(
            ProvisionUser,
            "provision_user",
            (),
            {"email": "a@example.com", "role": "admin", "password_hash": value},
        )
    assert value.strip() not in str(error.value)


def test_positional_arguments_are_refused() -> None:
    with pytest.raises(
        InvalidPayload, match=r'delete_user: takes keyword arguments only \(JSON field "k"\), got 1'
    ):
        parse_payload(DeleteUser, "delete_user", ["a@example.com"], {})


def test_every_function_has_a_model_and_set_user_role_needs_a_role() -> None:
    assert set(PAYLOADS) == {
        "provision_user",
        "set_user_role",
        "deactivate_user",
        "delete_user",
        "provision_users",
    }
    with pytest.raises(InvalidPayload, match="role: Field required"):
        parse_payload(SetUserRole, "set_user_role", (), {"email": "a@example.com"})
