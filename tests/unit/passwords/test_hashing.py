"""Password hashing runs on a thread pool, not on the event loop."""

from __future__ import annotations

import asyncio

from worker.passwords.hashing import PasswordHashing
from worker.passwords.policy import DEFAULT_POLICY


async def test_hashing_runs_off_the_event_loop() -> None:
    """While 16 hashes run on the pool, the event loop keeps turning (it would freeze otherwise)."""
    hashing = PasswordHashing(DEFAULT_POLICY, threads=2)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    from pydantic import SecretStr

    spinner = asyncio.create_task(ticker())
    try:
        hashes = await asyncio.gather(*(hashing.hash(SecretStr(f"pw-{i}")) for i in range(16)))
    finally:
        spinner.cancel()
        hashing.close()
    assert len(set(hashes)) == 16
    assert ticks >= 10  # 16 hashes take >= 8 x 20 ms on two threads; a blocked loop would tick ~0 times
