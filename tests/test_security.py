"""Password hashing for enqueuers."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher, Type, extract_parameters

from worker.security import hash_password, is_argon2id_hash


def test_hash_password_makes_an_argon2id_hash_above_the_owasp_minimum() -> None:
    hashed = hash_password("correct horse battery staple")
    params = extract_parameters(hashed)
    assert params.type is Type.ID
    assert params.memory_cost >= 19 * 1024
    assert params.time_cost >= 2
    assert params.parallelism >= 1
    assert PasswordHasher().verify(hashed, "correct horse battery staple")
    assert is_argon2id_hash(hashed)


def test_hashes_are_salted() -> None:
    assert hash_password("same") != hash_password("same")


def test_an_empty_password_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        hash_password("")
