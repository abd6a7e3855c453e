"""Bearer tokens: SCIM_TOKENS kept only as SHA-256 digests, compared in constant time.

Several tokens may be valid at once (rotation: add the new one, move the identity provider, drop
the old one). A token never leaves this module: callers get the matching digest, which keys the
request's job ids (`worker.scim.jobs`), and log lines never carry the Authorization header.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

CHALLENGE = 'Bearer realm="scim"'
"""The WWW-Authenticate header of a 401 (RFC 6750 §3)."""


def token_digest(token: str) -> bytes:
    """The SHA-256 digest a token is kept and compared as."""
    return hashlib.sha256(token.encode("utf-8")).digest()


class Tokens:
    """The accepted bearer tokens, as digests only."""

    def __init__(self, tokens: Sequence[str]) -> None:
        digests = [token_digest(token) for token in tokens if token]
        if not digests:
            raise ValueError(
                "SCIM_TOKENS is not set: give the bearer token(s) identity providers send, comma-separated; "
                "the SCIM service refuses to start without one"
            )
        self._digests = tuple(digests)

    def match(self, authorization: str | None) -> bytes | None:
        """The digest of the token an `Authorization: Bearer …` header carries, if it is accepted."""
        if authorization is None:
            return None
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return None
        digest = token_digest(credentials.strip())
        found: bytes | None = None
        for accepted in self._digests:  # every digest is compared: the time does not depend on which
            if hmac.compare_digest(digest, accepted):
                found = accepted
        return found
