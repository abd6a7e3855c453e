"""JSON job and result encoding."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import UUID

import pytest
from arq.jobs import DeserializationError, deserialize_job, serialize_job, serialize_result

from worker.db.models import Role
from worker.jobs.errors import InvalidPayload, JobFailed
from worker.jobs.serialization import deserialize, serialize


def test_a_job_is_plain_json_another_language_can_write() -> None:
    raw = serialize_job(
        "provision_user",
        (),
        {"email": "a@example.com", "role": "admin"},
        None,
        1700000000000,
        serializer=serialize,
    )
    assert json.loads(raw) == {
        "t": None,
        "f": "provision_user",
        "a": [],
        "k": {"email": "a@example.com", "role": "admin"},
        "et": 1700000000000,
    }


def test_optional_envelope_fields_default() -> None:
    job = deserialize_job(
        b'{"f": "delete_user", "k": {"email": "a@example.com"}, "et": 5}', deserializer=deserialize
    )
    # arq declares JobDef.args a tuple; our JSON deserializer hands over the list it read.
    assert (job.args, job.kwargs, job.job_try) == ([], {"email": "a@example.com"}, None)  # type: ignore[comparison-overlap]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (
            b"\x80\x04\x95pickle",
            "not JSON (UnicodeDecodeError: 'utf-8' codec can't decode byte 0x80 in position 0",
        ),
        (b"{nope", "not JSON (JSONDecodeError: Expecting property name enclosed in double quotes"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'{"f": 1, "et": 1}', 'job field "f" (function name) must be a string'),
        (b'{"f": "x", "a": {}, "et": 1}', 'job field "a" (positional arguments) must be a list'),
        (b'{"f": "x", "t": "1", "et": 1}', 'job field "t" (try number) must be an integer or null'),
        (b'{"f": "x"}', 'job field "et" (enqueue time, ms since the epoch) must be an integer'),
    ],
)
def test_malformed_jobs_are_rejected_naming_the_problem(raw: bytes, problem: str) -> None:
    with pytest.raises(DeserializationError) as error:
        deserialize_job(raw, deserializer=deserialize)
    assert problem in str(error.value.__cause__)


def test_a_failure_round_trips_as_a_readable_error() -> None:
    raw = serialize_result(
        "provision_user",
        (),
        {},
        1,
        1,
        False,
        InvalidPayload("email: bad"),
        2,
        3,
        "ref",
        "q",
        "id",
        serializer=serialize,
    )
    assert raw is not None
    assert json.loads(raw)["r"] == {"error": {"type": "InvalidPayload", "message": "email: bad"}}
    revived = deserialize(raw)["r"]
    assert isinstance(revived, JobFailed)
    assert (revived.error_type, revived.message, str(revived)) == (
        "InvalidPayload",
        "email: bad",
        "InvalidPayload: email: bad",
    )


def test_a_wrapped_cause_is_part_of_the_message() -> None:
    try:
        try:
            raise ValueError("inner detail")
        except ValueError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError as outer:
        raw = serialize({"s": False, "r": outer})
    assert json.loads(raw)["r"]["error"]["message"] == "outer: ValueError: inner detail"


def test_datetimes_uuids_and_enums_are_encoded() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    raw = serialize({"r": {"at": when, "id": UUID(int=1), "role": Role.ADMIN, "tags": ("a",)}})
    assert json.loads(raw)["r"] == {
        "at": "2026-01-02T03:04:05+00:00",
        "id": "00000000-0000-0000-0000-000000000001",
        "role": "admin",
        "tags": ["a"],
    }


def test_a_successful_result_is_not_touched() -> None:
    raw = serialize({"s": True, "r": {"error": {"type": "x"}}})
    assert deserialize(raw)["r"] == {"error": {"type": "x"}}


def test_unserializable_values_raise() -> None:
    with pytest.raises(TypeError, match="object is not JSON serializable"):
        serialize({"r": object()})


def test_nan_and_infinity_are_not_json() -> None:
    with pytest.raises(ValueError, match=r"not JSON \(ValueError: -Infinity is not JSON\)"):
        deserialize(b'{"f": "x", "k": {"email": -Infinity}, "et": 1}')


def test_a_result_keeps_none_of_the_job_arguments() -> None:
    raw = serialize_result(
        "provision_user",
        (),
        {"email": "a@example.com", "password_hash": "$argon2id$secret"},
        1,
        1,
        True,
        {"status": "created"},
        2,
        3,
        "ref",
        "q",
        "id",
        serializer=serialize,
    )
    assert raw is not None
    assert b"secret" not in raw
    assert (json.loads(raw)["a"], json.loads(raw)["k"]) == ([], {})


def test_strings_that_are_not_valid_unicode_still_serialize() -> None:
    raw = serialize({"s": False, "f": "\ud80b", "r": RuntimeError("function '\ud80b' not found")})
    assert json.loads(raw)["f"] == "\ud80b"
