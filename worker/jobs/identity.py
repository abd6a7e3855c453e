"""The identity key: which emails name the same person, decided here and nowhere else.

The key is computed from an email `worker.jobs.emails.normalize_email` has already accepted.
The domain is its ASCII (IDNA) form, lower-cased, so `bücher.example` and `xn--bcher-kva.example`
are one domain. The local part is case-folded: RFC 5321 lets a server treat local parts as
case-sensitive, but enqueuers do not keep the case of an address consistent, so `Ivan@x` and
`ivan@x` are one person. An ASCII local part is simply lower-cased; any other goes through NFC,
Python's full lower-case mapping, then NFC again.

Only case is folded, and only by `str.lower()`:

- `İ` (U+0130) lower-cases to `i` + U+0307, not to `i`, and dotless i (U+0131) stays itself, so
  `İvan@x`, `Ivan@x` and `ivan@x` spelt with U+0131 are three people (PostgreSQL's lower() and
  simple case mappings would merge the first two).
- `ß` is not expanded: `maße@x` and `MASSE@x` (key `masse@x`) are two people.
- Python applies the final-sigma rule: `ΟΔΥΣΣΕΥΣ@x` keys to `οδυσσευς@x`, a different person from
  `οδυσσευσ@x`.

Local parts that no rule of case could make safe are refused (`KeyRefused`): code points
unassigned in the Unicode version the key is defined on, private-use code points and surrogates,
and compatibility characters (the ligature U+FB01, full-width letters such as U+FF41), whose plain
look-alikes would be another person.

A key must never change for an address, or one person would become two: version 1 is defined on
Unicode 14.0.0 (Python 3.11's tables), and a Python with other tables refuses non-ASCII local
parts rather than key them differently. Any change to these rules is a new `KEY_VERSION`.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import email_validator
from pydantic_core import PydanticCustomError

KEY_VERSION = 1
"""The version of the rules below; keys of different versions are never compared."""

UNICODE_VERSION = "14.0.0"
"""The Unicode version key version 1 is defined on (Python 3.11's `unicodedata.unidata_version`)."""

# Read at call time, so that a test can stand in for a Python with newer tables.
_UNICODE = unicodedata.unidata_version

_REFUSED_CATEGORIES = {
    "Cn": "unassigned in Unicode " + UNICODE_VERSION,
    "Co": "a private-use code point",
    "Cs": "a surrogate",
}


class KeyRefused(ValueError):
    """An email that has no identity key under this key version."""


def _code_point(char: str) -> str:
    return f"U+{ord(char):04X} {unicodedata.name(char, '')}".rstrip()


def _local_key(local: str) -> str:
    if local.isascii():
        return local.lower()
    if _UNICODE != UNICODE_VERSION:
        raise KeyRefused(
            f"identity key version {KEY_VERSION} is defined on Unicode {UNICODE_VERSION} and this Python "
            f"has Unicode {_UNICODE}: key non-ASCII local parts on Python 3.11, or define a new key version"
        )
    for char in local:
        why = _REFUSED_CATEGORIES.get(unicodedata.category(char))
        if why is not None:
            raise KeyRefused(f"the local part has U+{ord(char):04X}, {why}: use an address without it")
    composed = unicodedata.normalize("NFC", local)
    if unicodedata.normalize("NFKC", local) != composed:
        odd = [c for c in local if unicodedata.normalize("NFKC", c) != unicodedata.normalize("NFC", c)]
        raise KeyRefused(
            f"the local part has compatibility characters ({', '.join(map(_code_point, odd))}): "
            "use the plain characters they stand for (its NFKC form)"
        )
    return unicodedata.normalize("NFC", composed.lower())


@lru_cache(maxsize=4096)
def _idna_domain(domain: str) -> str:
    try:
        return email_validator.validate_email(f"x@{domain}", check_deliverability=False).ascii_domain.lower()
    except email_validator.EmailNotValidError as error:
        raise KeyRefused(f"the domain is not valid ({error}): validate the email first") from None


def identity_key(email: str) -> str:
    """The identity key of an email `normalize_email` returned; `KeyRefused` if it has none.

    Two emails name the same person exactly when their keys are equal.
    """
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain:
        raise KeyRefused("not an email address (local@domain): validate the email first")
    if email.isascii():
        return email.lower()
    return f"{_local_key(local)}@{domain.lower() if domain.isascii() else _idna_domain(domain)}"


def checked_key(email: str) -> str:
    """`identity_key`, its refusal raised as a `PydanticCustomError` (what validation reports)."""
    try:
        return identity_key(email)
    except KeyRefused as error:
        raise PydanticCustomError("email_key", str(error)) from None


def keyable(email: str) -> str:
    """`email` unchanged if it has an identity key, else a `PydanticCustomError` saying why (validators)."""
    checked_key(email)
    return email
