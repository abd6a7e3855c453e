"""Email address validation: `email-validator`'s verdict, without paying for it once per address.

`email-validator` (through pydantic's `EmailStr`) spends most of its time on an address checking
the domain, and a bulk batch spent longer validating emails than PostgreSQL spent writing them
(figures: docs/performance.md). Addresses in a batch share a handful of domains, so the domain's
verdict is cached, and a plain ASCII local part is checked with a dot-atom pattern built from
the library's own ATEXT. Anything else (quoted or non-ASCII local parts, display names, RFC 2142
mailbox names, bad domains, over-long addresses) goes to the library itself, so results and
error messages are the library's; `tests/unit/jobs/test_emails.py` checks that both paths agree on
generated addresses. `Email` also refuses addresses that have no identity key
(`worker.jobs.identity.keyable`: compatibility characters and the like), so a job never carries one.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated

import email_validator
from email_validator.rfc_constants import (
    ATEXT,
    CASE_INSENSITIVE_MAILBOX_NAMES,
    EMAIL_MAX_LENGTH,
    LOCAL_PART_MAX_LENGTH,
)
from pydantic import AfterValidator, WithJsonSchema
from pydantic.networks import validate_email

from worker.jobs.identity import checked_key, keyable

# The plain shape: a dot-atom local part (the library's own ATEXT) and an ASCII host name.
_PLAIN_ADDRESS = re.compile(rf"([{ATEXT}]+(?:\.[{ATEXT}]+)*)@([A-Za-z0-9.-]+)")
_MAILBOX_NAMES = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)


@lru_cache(maxsize=4096)
def _normalized_domain(domain: str) -> str | None:
    """The library's normalized form of an ASCII domain, or None when it refuses the domain."""
    try:
        return email_validator.validate_email(f"x@{domain}", check_deliverability=False).domain
    except email_validator.EmailNotValidError:
        return None


def normalize_email(value: str) -> str:
    """`value` as `EmailStr` would return it (domain lower-cased), or its `PydanticCustomError`."""
    plain = _PLAIN_ADDRESS.fullmatch(value)
    if plain is not None and len(value) <= EMAIL_MAX_LENGTH:
        local, domain = plain.groups()
        if len(local) <= LOCAL_PART_MAX_LENGTH and local.lower() not in _MAILBOX_NAMES:
            normalized = _normalized_domain(domain)
            if normalized is not None:
                return f"{local}@{normalized}"
    return validate_email(value)[1]


def email_key(value: str) -> str:
    """The identity key of an email as sent (normalized first, as payload validation does).

    A `PydanticCustomError` says why there is none: not an email, or no key for it.
    """
    return checked_key(normalize_email(value))


Email = Annotated[
    str,
    AfterValidator(normalize_email),
    AfterValidator(keyable),
    WithJsonSchema({"type": "string", "format": "email"}),
]
"""A valid email address with an identity key, normalized as `pydantic.EmailStr` does (for payload models)."""
