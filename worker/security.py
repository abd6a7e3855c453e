"""Password hashing policy: argon2id, shared by enqueuers and the worker."""

from __future__ import annotations

import re

from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError

# argon2-cffi's defaults (RFC 9106 "low memory": m=64 MiB, t=3, p=4) are above OWASP's minimum
# for argon2id (m=19 MiB, t=2, p=1).
_hasher = PasswordHasher(type=Type.ID)

# $argon2id$v=19$m=…,t=…,p=…$<salt, ≥ 8 bytes>$<hash, ≥ 16 bytes>, unpadded standard base64.
_ARGON2ID_PHC = re.compile(
    r"\$argon2id\$v=19\$m=[1-9][0-9]{0,9},t=[1-9][0-9]{0,9},p=[1-9][0-9]{0,2}"
    r"\$[A-Za-z0-9+/]{11,}\$[A-Za-z0-9+/]{22,}"
)
PASSWORD_HASH_MAX_LENGTH = 512
ARGON2ID_FORMAT = "$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>"


def hash_password(password: str) -> str:
    """Hash `password` with argon2id; send the result as a job's `password_hash`."""
    if not password:
        raise ValueError("password must not be empty")
    return _hasher.hash(password)


def is_argon2id_hash(value: str) -> bool:
    """True if `value` is a well-formed argon2id PHC string."""
    if len(value) > PASSWORD_HASH_MAX_LENGTH or not _ARGON2ID_PHC.fullmatch(value):
        return False
    try:
        return extract_parameters(value).type is Type.ID
    except InvalidHashError:
        return False
