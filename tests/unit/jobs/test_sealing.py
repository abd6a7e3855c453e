"""Sealed passwords: round trip, tampering, unknown keys, age, rotation."""

from __future__ import annotations

import base64
import time

import pytest
from cryptography.fernet import Fernet

from worker.jobs.errors import SealedPasswordRefused
from worker.jobs.sealing import KeyRing, new_seal_key, seal_password

DAY = 24 * 3600


def test_a_sealed_password_opens_with_the_key_ring() -> None:
    key = new_seal_key()
    token = seal_password("correct horse", key)
    assert "correct horse" not in token
    assert KeyRing([key], max_age=DAY).unseal(token) == "correct horse"


def test_a_tampered_token_is_refused_without_echoing_it() -> None:
    key = new_seal_key()
    raw = bytearray(base64.urlsafe_b64decode(seal_password("correct horse", key)))
    raw[40] ^= 0x01  # flip one ciphertext bit
    tampered = base64.urlsafe_b64encode(bytes(raw)).decode()
    with pytest.raises(
        SealedPasswordRefused, match="it was altered, or sealed with a key this worker"
    ) as refused:
        KeyRing([key], max_age=DAY).unseal(tampered)
    assert tampered not in str(refused.value)


def test_a_token_under_a_key_the_worker_does_not_hold_is_refused() -> None:
    token = seal_password("pw", new_seal_key())
    with pytest.raises(SealedPasswordRefused, match="does not hold"):
        KeyRing([new_seal_key()], max_age=DAY).unseal(token)


def test_an_expired_token_is_refused() -> None:
    key = new_seal_key()
    old = Fernet(key.encode()).encrypt_at_time(b"pw", int(time.time()) - 2 * DAY)
    with pytest.raises(
        SealedPasswordRefused, match=r"password_sealed expired: sealed \d+ s ago, more than SEAL_MAX_AGE"
    ):
        KeyRing([key], max_age=DAY).unseal(old.decode())


def test_rotation_keeps_old_tokens_open_and_opens_new_ones() -> None:
    old_key, new_key = new_seal_key(), new_seal_key()
    sealed_before = seal_password("before rotation", old_key)
    ring = KeyRing([new_key, old_key], max_age=DAY)
    assert ring.unseal(sealed_before) == "before rotation"
    sealed_after = seal_password("after", new_key)
    assert ring.unseal(sealed_after) == "after"
    assert KeyRing([new_key], max_age=DAY).unseal(sealed_after) == "after"


def test_a_token_holding_non_text_bytes_is_refused() -> None:
    key = new_seal_key()
    token = Fernet(key.encode()).encrypt(b"\xff\xfe").decode()
    with pytest.raises(SealedPasswordRefused, match="not UTF-8"):
        KeyRing([key], max_age=DAY).unseal(token)


def test_empty_passwords_and_rings_are_refused() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        seal_password("", new_seal_key())
    with pytest.raises(ValueError, match="at least one key"):
        KeyRing([], max_age=DAY)
