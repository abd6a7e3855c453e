"""Bearer tokens: digests only, every accepted token matches, anything else does not."""

from __future__ import annotations

import pytest

from worker.scim.auth import Tokens, token_digest


def test_each_configured_token_matches_its_digest() -> None:
    tokens = Tokens(["old-token", "new-token"])
    assert tokens.match("Bearer old-token") == token_digest("old-token")
    assert tokens.match("bearer   new-token ") == token_digest("new-token")


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic b2xkLXRva2Vu", "Bearer wrong", "old-token", "Bearer old-tokenx"],
)
def test_anything_else_is_refused(header: str | None) -> None:
    assert Tokens(["old-token"]).match(header) is None


def test_tokens_are_kept_as_digests_only() -> None:
    tokens = Tokens(["a-secret-token"])
    assert "a-secret-token" not in repr(vars(tokens))


def test_no_token_refuses_to_start() -> None:
    with pytest.raises(ValueError, match="SCIM_TOKENS"):
        Tokens([])
    with pytest.raises(ValueError, match="SCIM_TOKENS"):
        Tokens([""])
