"""The identity key: which emails are one person, which never are, and which have no key."""

from __future__ import annotations

import pytest
from pydantic_core import PydanticCustomError

from worker.jobs import identity
from worker.jobs.emails import email_key, normalize_email
from worker.jobs.errors import InvalidPayload
from worker.jobs.identity import KEY_VERSION, UNICODE_VERSION, KeyRefused, identity_key, keyable
from worker.jobs.payloads import ProvisionUser, parse_bulk_entries, parse_payload

DECOMPOSED_E_ACUTE = "E\u0301"
COMPATIBILITY_EMAILS = ["\ufb01nn@x.example", "\uff41da@x.example"]  # ligature fi, full-width a


def key(email: str) -> str:
    """The key the worker computes: after `normalize_email`, as payload validation does."""
    return email_key(email)


def test_key_version_1_is_defined_on_python_311_unicode() -> None:
    assert (KEY_VERSION, UNICODE_VERSION) == (1, "14.0.0")


@pytest.mark.parametrize(
    "emails",
    [
        ["Ivan@x.example", "IVAN@x.example", "ivan@X.example"],
        ["Éloïse@x.example", "éloïse@x.example", f"{DECOMPOSED_E_ACUTE}loïse@x.example"],
        ["ada@bücher.example", "ada@xn--bcher-kva.example", "Ada@BÜCHER.example"],
        # No capital H with line below exists, so only lower-casing makes U+1E96 composable.
        ["H\u0331ana@x.example", "\u1e96ana@x.example"],
    ],
)
def test_one_person_has_one_key(emails: list[str]) -> None:
    assert len({key(email) for email in emails}) == 1


def test_the_domain_of_a_key_is_its_ascii_form() -> None:
    assert key("Ada@Bücher.example") == "ada@xn--bcher-kva.example"
    assert key("Éloïse@Bücher.example") == "éloïse@xn--bcher-kva.example"


def test_a_decomposed_local_part_keys_to_its_composed_form() -> None:
    # Straight to identity_key: normalize_email composes on its own, the key must not rely on it.
    assert identity_key(f"{DECOMPOSED_E_ACUTE}loïse@x.example") == "\u00e9loïse@x.example"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("Ivan@x.example", "\u0130van@x.example"),  # İ lower-cases to i + U+0307, not to i
        ("ivan@x.example", "\u0131van@x.example"),  # dotless i is a letter of its own
        ("maße@x.example", "MASSE@x.example"),  # ß is not expanded to ss
        ("ΟΔΥΣΣΕΥΣ@x.example", "οδυσσευσ@x.example"),  # final sigma
    ],
)
def test_never_one_account(one: str, other: str) -> None:
    assert key(one) != key(other)


def test_decided_keys() -> None:
    assert key("MASSE@x.example") == "masse@x.example"
    assert key("maße@x.example") == "maße@x.example"
    assert key("ΟΔΥΣΣΕΥΣ@x.example") == "οδυσσευς@x.example"
    assert key("\u0130van@x.example") == "i\u0307van@x.example"


@pytest.mark.parametrize("email", COMPATIBILITY_EMAILS)
def test_compatibility_characters_have_no_key(email: str) -> None:
    with pytest.raises(KeyRefused, match="compatibility characters"):
        identity_key(normalize_email(email))
    with pytest.raises(PydanticCustomError, match="compatibility characters") as error:
        keyable(email)
    assert error.value.type == "email_key"


@pytest.mark.parametrize(
    ("local", "problem"),
    [("\u0378", "unassigned in Unicode 14.0.0"), ("\ue000", "private-use"), ("\ud800", "surrogate")],
)
def test_unsafe_code_points_have_no_key(local: str, problem: str) -> None:
    with pytest.raises(KeyRefused, match=problem):
        identity_key(f"a{local}b@x.example")


def test_keyable_returns_the_email_unchanged() -> None:
    assert keyable("\u0130van@Bücher.example") == "\u0130van@Bücher.example"


def test_another_unicode_version_refuses_only_non_ascii_local_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identity, "_UNICODE", "15.1.0")
    assert identity_key("Ivan@Bücher.example") == "ivan@xn--bcher-kva.example"
    with pytest.raises(KeyRefused) as error:
        identity_key("Éloïse@x.example")
    assert "defined on Unicode 14.0.0 and this Python has Unicode 15.1.0" in str(error.value)


@pytest.mark.parametrize("email", COMPATIBILITY_EMAILS)
def test_a_payload_with_an_unkeyable_email_is_refused(email: str) -> None:
    with pytest.raises(InvalidPayload) as error:
        parse_payload(ProvisionUser, "provision_user", (), {"email": email, "role": "member"})
    assert "invalid payload: email: " in str(error.value)
    assert "compatibility characters" in str(error.value)


async def test_a_batch_rejects_unkeyable_entries_and_keeps_the_others() -> None:
    emails = ["ada@x.example", *COMPATIBILITY_EMAILS, "Éloïse@x.example"]
    valid, rejected = await parse_bulk_entries([{"email": email, "role": "member"} for email in emails])
    assert [(index, user["email"]) for index, user in valid] == [
        (0, "ada@x.example"),
        (3, "Éloïse@x.example"),
    ]
    assert [entry["index"] for entry in rejected] == [1, 2]
    assert all(str(entry["error"]).startswith("email: ") for entry in rejected)
    assert all("compatibility characters" in str(entry["error"]) for entry in rejected)


async def test_a_batch_finds_duplicates_by_identity_key() -> None:
    emails = ["\u0130van@x.example", "Ivan@x.example", "IVAN@x.example", "ivan@x.example", "éloïse@X.example"]
    entries = [{"email": email, "role": "member"} for email in emails]
    entries.append({"email": f"{DECOMPOSED_E_ACUTE}loïse@x.example", "role": "member"})
    # Alike only once lower-cased and composed again: str.lower() alone would let both through.
    entries += [
        {"email": "\u1e96ana@x.example", "role": "member"},
        {"email": "H\u0331ana@x.example", "role": "member"},
    ]
    valid, rejected = await parse_bulk_entries(entries)
    assert [index for index, _ in valid] == [0, 1, 4, 6]
    assert rejected == [
        {"index": 2, "error": "email: duplicate of entry 1"},
        {"index": 3, "error": "email: duplicate of entry 1"},
        {"index": 5, "error": "email: duplicate of entry 4"},
        {"index": 7, "error": "email: duplicate of entry 6"},
    ]
