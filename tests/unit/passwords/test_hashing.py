"""Password hashing runs on a thread pool, not on the event loop, and behind it in CPU priority."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from typing import NoReturn

import pytest
from pydantic import SecretStr

from worker.passwords import hashing as hashing_module
from worker.passwords.hashing import PasswordHashing
from worker.passwords.policy import DEFAULT_POLICY, PasswordPolicy, hash_password

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's"
)


async def test_hashing_runs_off_the_event_loop() -> None:
    """While 16 hashes run on the pool, the event loop keeps turning (it would freeze otherwise)."""
    hashing = PasswordHashing(DEFAULT_POLICY, threads=2)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    spinner = asyncio.create_task(ticker())
    try:
        hashes = await asyncio.gather(*(hashing.hash(SecretStr(f"pw-{i}")) for i in range(16)))
    finally:
        spinner.cancel()
        hashing.close()
    assert len(set(hashes)) == 16
    assert ticks >= 10  # 16 hashes take >= 8 x 20 ms on two threads; a blocked loop would tick ~0 times


def _nice_in_proc(thread_id: int) -> int:
    """A thread's nice value as the kernel reports it (field 19 of /proc/self/task/<tid>/stat)."""
    with open(f"/proc/self/task/{thread_id}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # after the name, which may hold spaces
    return int(fields[16])  # fields[0] is field 3 (state)


async def _hashing_thread_ids(hashing: PasswordHashing, monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """The ids of the threads that ran 8 hashes on `hashing`'s pool."""
    seen: set[int] = set()

    def recording(password: str, policy: PasswordPolicy) -> str:
        seen.add(threading.get_native_id())
        return hash_password(password, policy)

    monkeypatch.setattr(hashing_module, "hash_password", recording)
    await asyncio.gather(*(hashing.hash(SecretStr(f"pw-{i}")) for i in range(8)))
    return seen


@linux_only
async def test_the_hashing_threads_run_at_nice_19_and_the_event_loop_keeps_its_priority(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The scheduler gives the loop's thread (the cheap jobs) the cores first; the hashing threads
    take what it leaves (docs/performance.md, "Password hashing pool")."""
    loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    hashing = PasswordHashing(DEFAULT_POLICY, threads=2, nice=19)
    try:
        threads = await _hashing_thread_ids(hashing, monkeypatch)
        assert threads
        assert threading.get_native_id() not in threads
        assert {_nice_in_proc(thread) for thread in threads} == {19}
        assert {os.getpriority(os.PRIO_PROCESS, thread) for thread in threads} == {19}
    finally:
        hashing.close()
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == loop_nice
    assert _nice_in_proc(threading.get_native_id()) == loop_nice


@linux_only
async def test_nice_0_leaves_the_hashing_threads_at_the_workers_priority(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HASH_NICE=0: hashing competes with the event loop as it did before issue 20."""
    hashing = PasswordHashing(DEFAULT_POLICY, threads=2, nice=0)
    try:
        threads = await _hashing_thread_ids(hashing, monkeypatch)
        loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        assert {_nice_in_proc(thread) for thread in threads} == {loop_nice}
    finally:
        hashing.close()


@linux_only
async def test_a_pool_that_may_not_lower_its_priority_still_hashes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A sandbox that forbids setpriority costs the ordering, never the hashing: a failing thread
    initializer would have broken the pool, and every password job with it."""

    def forbidden(which: int, who: int, priority: int) -> NoReturn:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "setpriority", forbidden)
    hashing = PasswordHashing(DEFAULT_POLICY, threads=1, nice=19)
    try:
        with caplog.at_level(logging.WARNING, logger=hashing_module.__name__):
            password_hash = await hashing.hash(SecretStr("pw"))
    finally:
        hashing.close()
    assert password_hash.startswith("$argon2id$")
    assert "could not lower the hashing thread's priority" in caplog.text
