"""The cached email check gives exactly `EmailStr`'s answers: same normal form, same errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, EmailStr, ValidationError

from worker.jobs.emails import Email, _normalized_domain


class _Library(BaseModel):
    model_config = ConfigDict(strict=True)
    email: EmailStr


class _Ours(BaseModel):
    model_config = ConfigDict(strict=True)
    email: Email


def _verdict(model: type[BaseModel], value: str) -> tuple[str, str]:
    try:
        return "ok", str(model.model_validate({"email": value}).email)  # type: ignore[attr-defined]
    except ValidationError as error:
        return "error", "; ".join(f"{e['type']}: {e['msg']}" for e in error.errors())


def _assert_same(value: str) -> None:
    assert _verdict(_Ours, value) == _verdict(_Library, value), value


_LOCAL_CHARS = "abcXYZ09._+-!#$%&'*/=?^`{|}~\"(),:;<>@[\\] é\n"
_DOMAIN_CHARS = "abcXYZ09.-_ é[]:"
_DOMAINS = [
    "example.com",
    "Example.COM",
    "sub.example.org",
    "localhost",
    "example.local",
    "x.test",
    "x.invalid",
    "a-b.co",
    "-bad.com",
    "bad-.com",
    "a..b.com",
    "com",
    "123.45.67.89",
    "[127.0.0.1]",
    "xn--bcher-kva.example",
    "bücher.example",
    "a" * 64 + ".com",
    ".".join(["a" * 60] * 5) + ".com",
    ".".join(["a" * 63] * 3) + ".com",
    "",
]


@pytest.mark.parametrize(
    "value",
    [
        "ada@example.com",
        "Ada.Lovelace+tag@Example.COM",
        "Postmaster@example.com",  # RFC 2142 names are lower-cased by the library
        "ABUSE@example.com",
        "a@localhost",
        "a@example.local",
        "a..b@example.com",
        ".a@example.com",
        "a.@example.com",
        '"quoted"@example.com',
        "Ada <ada@example.com>",
        "ada@example.com ",
        " ada@example.com",
        "ada@example.com\n",
        "ada@exa mple.com",
        "ada@",
        "@example.com",
        "ada",
        "a@b@example.com",
        "é@example.com",
        "ada@bücher.example",
        "a" * 64 + "@example.com",
        "a" * 65 + "@example.com",
        "a" * 58 + "@" + ".".join(["a" * 63] * 3) + ".com",  # 254 in all: the longest allowed
        "a" * 64 + "@" + ".".join(["a" * 63] * 3) + ".com",  # each part fits, the whole does not
        "a" * 3000 + "@example.com",
    ],
)
def test_known_cases_agree_with_the_library(value: str) -> None:
    _assert_same(value)


@settings(max_examples=1500, deadline=None)
@given(
    local=st.text(alphabet=_LOCAL_CHARS, min_size=0, max_size=70),
    domain=st.one_of(st.sampled_from(_DOMAINS), st.text(alphabet=_DOMAIN_CHARS, max_size=30)),
)
def test_generated_addresses_agree_with_the_library(local: str, domain: str) -> None:
    _assert_same(f"{local}@{domain}")


def test_a_domain_is_checked_once_then_remembered() -> None:
    _normalized_domain.cache_clear()
    _assert_same("one@cached-domain.example")
    _assert_same("two@cached-domain.example")
    info = _normalized_domain.cache_info()
    assert (info.misses, info.hits) == (1, 1)
