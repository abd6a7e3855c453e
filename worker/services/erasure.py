"""Erasure digests: how `erase` keeps a person's newest stamp without keeping who it was.

`erase` removes a person's state row, but an older command still in a queue or a retry backoff
must not bring the person back. So the newest stamp stays, under HMAC-SHA256(ERASURE_KEYS key,
identity key): a later command finds it by computing the same digest, and nobody holding the
table (or a backup of it) without the key can tell whose it was. The first key writes; a second,
previous one is still looked up, so that keys can rotate (README, "Erasure").
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

MAX_KEYS = 2
"""The current key and the previous one."""


class ErasureKeys:
    """The ERASURE_KEYS secrets, turning identity keys into digests."""

    def __init__(self, keys: Sequence[str]) -> None:
        if len(keys) > MAX_KEYS:
            raise ValueError(
                f"ERASURE_KEYS holds at most {MAX_KEYS} keys: the current one, then the previous"
            )
        self._keys = [key.encode() for key in keys]

    @property
    def configured(self) -> bool:
        """Whether there is a key to erase with."""
        return bool(self._keys)

    def digests(self, key: str) -> tuple[bytes | None, bytes | None]:
        """The digest of an identity key under the current key and under the previous one (None if absent)."""
        message = key.encode()
        current = hmac.digest(self._keys[0], message, "sha256") if self._keys else None
        previous = hmac.digest(self._keys[1], message, "sha256") if len(self._keys) > 1 else None
        return current, previous


NO_ERASURE_KEYS = ErasureKeys(())
"""Without ERASURE_KEYS nothing can have been erased, so there is nothing to look up."""
