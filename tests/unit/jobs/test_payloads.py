"""The job contract's validation: strict, closed, and never echoing inputs."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from worker.jobs.errors import InvalidPayload
from worker.jobs.payloads import (
    BULK_SLICE,
    PAYLOADS,
    DeleteUser,
    ProvisionUser,
    SetUserRole,
    UpdateUser,
    parse_bulk_entries,
    parse_payload,
)
from worker.passwords.policy import hash_password


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
        "update_user",
        "deactivate_user",
        "delete_user",
        "provision_users",
    }
    with pytest.raises(InvalidPayload, match="role: Field required"):
        parse_payload(SetUserRole, "set_user_role", (), {"email": "a@example.com"})


def test_update_user_names_at_least_one_field() -> None:
    with pytest.raises(InvalidPayload, match="name at least one field to change"):
        parse_payload(UpdateUser, "update_user", (), {"email": "a@example.com"})


def test_update_user_takes_only_the_fields_it_names() -> None:
    update = parse_payload(UpdateUser, "update_user", (), {"email": "a@example.com", "active": True})
    assert (update.active, update.role, update.external_id, update.password_hash) == (True, None, None, None)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("active", "false", "active: Input should be a valid boolean"),
        ("role", "owner", "role: Input should be 'admin', 'member' or 'viewer'"),
        ("external_id", "", "external_id: String should have at least 1 character"),
        ("external_id", "x" * 256, "external_id: String should have at most 255 characters"),
        ("password_hash", "hunter2-in-the-clear", "password_hash: must be an argon2id PHC string"),
    ],
)
def test_update_user_refuses_bad_fields(field: str, value: str, problem: str) -> None:
    with pytest.raises(InvalidPayload) as error:
        parse_payload(UpdateUser, "update_user", (), {"email": "a@example.com", field: value})
    assert problem in str(error.value)
    assert "hunter2" not in str(error.value)


def test_provision_user_keeps_an_external_id() -> None:
    command = parse_payload(
        ProvisionUser,
        "provision_user",
        (),
        {"email": "a@example.com", "role": "viewer", "external_id": "00u1"},
    )
    assert command.external_id == "00u1"


async def test_batch_slices_keep_indexes_and_find_duplicates_across_slices() -> None:
    entries = [{"email": f"u{i}@example.com", "role": "member"} for i in range(2 * BULK_SLICE + 2)]
    bad = {1: "not-an-email", BULK_SLICE + 1: "U0@Example.com"}  # the second duplicates entry 0
    for index, email in bad.items():
        entries[index]["email"] = email
    entries[2 * BULK_SLICE]["role"] = "owner"
    valid, rejected = await parse_bulk_entries(entries)
    rejected_indexes = [1, BULK_SLICE + 1, 2 * BULK_SLICE]
    assert [index for index, _ in valid] == [i for i in range(len(entries)) if i not in rejected_indexes]
    assert [user["email"] for _, user in valid[:2]] == ["u0@example.com", "u2@example.com"]
    assert [r["index"] for r in rejected] == rejected_indexes
    assert rejected[1]["error"] == "email: duplicate of entry 0"


async def test_a_big_batch_lets_other_tasks_run_while_it_is_validated() -> None:
    ticks = 0

    async def other_job() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_job())
    await asyncio.sleep(0)
    before = ticks
    entries = [{"email": f"u{i}@example.com", "role": "member"} for i in range(5 * BULK_SLICE)]
    valid, _ = await parse_bulk_entries(entries)
    ran_meanwhile = ticks - before
    other.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await other
    assert len(valid) == 5 * BULK_SLICE
    assert ran_meanwhile >= 4  # once between each pair of slices
