"""The argon2id policy: hashing for enqueuers, and what counts as a strong enough hash."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher, Type, extract_parameters

from worker.passwords.policy import hash_password, is_argon2id_hash


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


def test_the_default_policy_is_owasps_minimum_and_lower_is_refused() -> None:
    from worker.passwords.policy import DEFAULT_POLICY, PasswordPolicy

    assert (DEFAULT_POLICY.memory_kib, DEFAULT_POLICY.time_cost, DEFAULT_POLICY.parallelism) == (19456, 2, 1)
    for weak in ({"memory_kib": 19455}, {"time_cost": 1}, {"parallelism": 0}):
        with pytest.raises(ValueError, match="below the OWASP minimum"):
            PasswordPolicy(**weak)


def test_verify_password_accepts_the_right_password_only() -> None:
    from worker.passwords.policy import verify_password

    stored = hash_password("right one")
    assert verify_password(stored, "right one").valid
    assert not verify_password(stored, "wrong one").valid
    assert not verify_password("not a hash", "right one").valid
    assert verify_password(stored, "right one").new_hash is None  # current parameters: nothing to do


def test_verify_password_rehashes_when_the_parameters_changed() -> None:
    from worker.passwords.policy import PasswordPolicy, verify_password

    stronger = PasswordPolicy(memory_kib=32 * 1024, time_cost=3, parallelism=1)
    old = hash_password("pw-123")
    result = verify_password(old, "pw-123", stronger)
    assert result.valid
    assert result.new_hash is not None
    params = extract_parameters(result.new_hash)
    assert (params.memory_cost, params.time_cost) == (32 * 1024, 3)
    assert verify_password(result.new_hash, "pw-123", stronger).new_hash is None
    assert verify_password(old, "wrong", stronger).new_hash is None  # never rehash a wrong password
