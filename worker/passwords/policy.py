"""Password policy (argon2id), shared by enqueuers, the worker and the service that logs users in."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP's minimum for argon2id: 19 MiB of memory, 2 passes, 1 lane.
MIN_MEMORY_KIB = 19 * 1024
MIN_TIME_COST = 2
MIN_PARALLELISM = 1

# $argon2id$v=19$m=…,t=…,p=…$<salt, ≥ 8 bytes>$<hash, ≥ 16 bytes>, unpadded standard base64.
_ARGON2ID_PHC = re.compile(
    r"\$argon2id\$v=19\$m=[1-9][0-9]{0,9},t=[1-9][0-9]{0,9},p=[1-9][0-9]{0,2}"
    r"\$[A-Za-z0-9+/]{11,}\$[A-Za-z0-9+/]{22,}"
)
PASSWORD_HASH_MAX_LENGTH = 512
ARGON2ID_FORMAT = "$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>"


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    """argon2id cost parameters; never below OWASP's minimum."""

    memory_kib: int = MIN_MEMORY_KIB
    time_cost: int = MIN_TIME_COST
    parallelism: int = MIN_PARALLELISM

    def __post_init__(self) -> None:
        if not (
            self.memory_kib >= MIN_MEMORY_KIB
            and self.time_cost >= MIN_TIME_COST
            and self.parallelism >= MIN_PARALLELISM
        ):
            raise ValueError(
                f"argon2id parameters m={self.memory_kib} KiB, t={self.time_cost}, p={self.parallelism} "
                f"are below the OWASP minimum (m >= {MIN_MEMORY_KIB}, t >= {MIN_TIME_COST}, "
                f"p >= {MIN_PARALLELISM})"
            )

    @property
    def hasher(self) -> PasswordHasher:
        """The argon2-cffi hasher for this policy."""
        return _hasher(self)


DEFAULT_POLICY = PasswordPolicy()
"""OWASP's first recommended argon2id configuration: m=19 MiB, t=2, p=1."""


@lru_cache(maxsize=8)
def _hasher(policy: PasswordPolicy) -> PasswordHasher:
    return PasswordHasher(
        time_cost=policy.time_cost,
        memory_cost=policy.memory_kib,
        parallelism=policy.parallelism,
        type=Type.ID,
    )


def hash_password(password: str, policy: PasswordPolicy = DEFAULT_POLICY) -> str:
    """Hash `password` with argon2id; usable as a job's `password_hash`."""
    if not password:
        raise ValueError("password must not be empty")
    return policy.hasher.hash(password)


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of `verify_password`: whether it matched, and a fresh hash to store if due."""

    valid: bool
    new_hash: str | None = None


def verify_password(
    password_hash: str, password: str, policy: PasswordPolicy = DEFAULT_POLICY
) -> Verification:
    """Check `password` against `password_hash`; if it matches a hash made under older parameters,
    also return a hash under `policy` for the caller to store (rehash on parameter change)."""
    try:
        policy.hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return Verification(valid=False)
    if policy.hasher.check_needs_rehash(password_hash):
        return Verification(valid=True, new_hash=policy.hasher.hash(password))
    return Verification(valid=True)


def is_argon2id_hash(value: str) -> bool:
    """True if `value` is a well-formed argon2id PHC string."""
    if len(value) > PASSWORD_HASH_MAX_LENGTH or not _ARGON2ID_PHC.fullmatch(value):
        return False
    try:
        return extract_parameters(value).type is Type.ID
    except InvalidHashError:
        return False


def meets_minimum(value: str) -> bool:
    """True if an argon2id hash was made with at least OWASP's minimum parameters."""
    params = extract_parameters(value)
    return (
        params.memory_cost >= MIN_MEMORY_KIB
        and params.time_cost >= MIN_TIME_COST
        and params.parallelism >= MIN_PARALLELISM
    )
