"""Sealed passwords: Fernet tokens (AES-128-CBC + HMAC-SHA256) under a rotatable shared key ring."""

from __future__ import annotations

import time
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from worker.jobs.errors import SealedPasswordRefused
from worker.passwords.hashing import PasswordHashing, UnsealedPassword


def new_seal_key() -> str:
    """A fresh key for SEAL_KEYS (32 random bytes, URL-safe base64)."""
    return Fernet.generate_key().decode()


def seal_password(password: str, key: str) -> str:
    """Seal `password` for a job's `password_sealed` with `key` (the first of SEAL_KEYS)."""
    if not password:
        raise ValueError("password must not be empty")
    return Fernet(key.encode()).encrypt(password.encode()).decode()


class KeyRing:
    """The keys a worker accepts (enqueuers seal with the first). Rotation: add the new key in front."""

    def __init__(self, keys: Sequence[str], *, max_age: int) -> None:
        if not keys:
            raise ValueError("a key ring needs at least one key")
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])
        self.max_age = max_age

    def unseal(self, token: str) -> str:
        """The password inside `token`, or `SealedPasswordRefused` saying why not (never what)."""
        try:
            password = self._fernet.decrypt(token.encode())
            sealed_at = self._fernet.extract_timestamp(token.encode())
        except InvalidToken:
            raise SealedPasswordRefused(
                "password_sealed could not be opened: it was altered, or sealed with a key this worker "
                "does not hold (SEAL_KEYS); seal it again with the current key"
            ) from None
        age = int(time.time()) - sealed_at
        if age > self.max_age:
            raise SealedPasswordRefused(
                f"password_sealed expired: sealed {age} s ago, more than SEAL_MAX_AGE ({self.max_age} s); "
                "seal it again"
            )
        try:
            return password.decode()
        except UnicodeDecodeError:
            raise SealedPasswordRefused("password_sealed holds bytes that are not UTF-8 text") from None


def unseal_password(sealed: str, *, key_ring: KeyRing | None, hashing: PasswordHashing) -> UnsealedPassword:
    """The password a job sent sealed, to be stored hashed; `SealedPasswordRefused` if it cannot be opened."""
    if key_ring is None:
        raise SealedPasswordRefused(
            "provision_user: this worker holds no SEAL_KEYS, so it cannot open password_sealed: "
            "configure the same SEAL_KEYS as the enqueuer"
        )
    return UnsealedPassword(SecretStr(key_ring.unseal(sealed)), hashing)
