"""The password a job wants stored, and argon2id hashing off the event loop on every core."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from pydantic import SecretStr

from worker.passwords.policy import PasswordPolicy, hash_password, verify_password

logger = logging.getLogger(__name__)


class PasswordHashing:
    """argon2id on a thread pool (argon2-cffi releases the GIL), so hashing never stalls other jobs.

    `nice` lowers the hashing threads' CPU priority by that much (Linux), so that the event loop,
    and the cheap jobs it runs, come first when the cores are busy (docs/performance.md, "Password
    hashing pool").
    """

    def __init__(self, policy: PasswordPolicy, *, threads: int, nice: int = 0) -> None:
        self.policy = policy
        self._executor = ThreadPoolExecutor(
            max_workers=threads,
            thread_name_prefix="argon2",
            initializer=lower_thread_priority,
            initargs=(nice,),
        )

    async def hash(self, password: SecretStr) -> str:
        """A new argon2id hash of `password` under the policy."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, hash_password, password.get_secret_value(), self.policy
        )

    async def is_current(self, password_hash: str, password: SecretStr) -> bool:
        """True if `password_hash` is of `password` and already uses the policy's parameters."""
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            self._executor, verify_password, password_hash, password.get_secret_value(), self.policy
        )
        return result.valid and result.new_hash is None

    def close(self) -> None:
        """Stop the threads; queued hashes are cancelled (their jobs are retried elsewhere)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


def lower_thread_priority(increment: int) -> None:
    """Add `increment` to the calling thread's nice value (at most 19); Linux only, best effort.

    Linux keeps a nice value per thread, and `setpriority(PRIO_PROCESS, tid)` sets one thread's;
    elsewhere the same call would renice the whole process, so it is skipped there.
    """
    if increment <= 0 or not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + increment))
    except OSError as error:  # a sandbox that forbids it: hash at the worker's own priority
        logger.warning("could not lower the hashing thread's priority (%s)", error)


class DesiredPassword(Protocol):
    """What a job asks for: decides whether the stored hash must change, and to what."""

    async def replacement_for(self, stored_hash: str | None) -> str | None:
        """The hash to store instead of `stored_hash`, or None if `stored_hash` already fits."""
        ...


@dataclass(frozen=True, slots=True)
class UnsealedPassword:
    """A password the worker unsealed: keep a stored hash that matches it, else hash it."""

    password: SecretStr
    hashing: PasswordHashing

    async def replacement_for(self, stored_hash: str | None) -> str | None:
        """None if the stored hash verifies (and is current), else a fresh hash."""
        if stored_hash is not None and await self.hashing.is_current(stored_hash, self.password):
            return None  # a job run twice must not re-hash: same password, same row
        return await self.hashing.hash(self.password)
