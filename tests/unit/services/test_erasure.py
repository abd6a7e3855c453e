"""Erasure digests and the ERASURE_KEYS setting."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from pydantic import ValidationError

from worker.services.erasure import NO_ERASURE_KEYS, ErasureKeys
from worker.settings import Settings

CURRENT = "c" * 32
PREVIOUS = "p" * 32


def test_a_digest_is_the_hmac_of_the_identity_key_under_each_key() -> None:
    digest, old = ErasureKeys([CURRENT, PREVIOUS]).digests("ada@example.com")
    assert digest == hmac.new(CURRENT.encode(), b"ada@example.com", hashlib.sha256).digest()
    assert old == hmac.new(PREVIOUS.encode(), b"ada@example.com", hashlib.sha256).digest()
    assert digest != old
    assert b"ada" not in digest


def test_without_keys_there_is_nothing_to_look_up() -> None:
    assert NO_ERASURE_KEYS.digests("ada@example.com") == (None, None)
    assert not NO_ERASURE_KEYS.configured
    assert ErasureKeys([CURRENT]).digests("ada@example.com")[1] is None


def test_more_than_two_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="at most 2"):
        ErasureKeys([CURRENT, PREVIOUS, "x" * 32])


def test_the_setting_takes_up_to_two_long_keys_and_never_shows_them() -> None:
    settings = Settings(_env_file=None, erasure_keys=f"{CURRENT}, {PREVIOUS}")
    assert settings.erasure_key_list == [CURRENT, PREVIOUS]
    assert CURRENT not in repr(settings)
    assert Settings(_env_file=None).erasure_key_list == []
    with pytest.raises(ValidationError, match="shorter than 32") as short:
        Settings(_env_file=None, erasure_keys="short-secret")
    assert "short-secret" not in str(short.value)
    with pytest.raises(ValidationError, match="at most 2"):
        Settings(_env_file=None, erasure_keys=",".join([CURRENT, PREVIOUS, "x" * 32]))
