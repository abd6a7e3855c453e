"""Queries on users and their per-person state; the caller's session, never a commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple, TypedDict

from sqlalchemy import select, text

from worker.db.models import User
from worker.jobs.emails import normalize_email
from worker.jobs.identity import KEY_VERSION, identity_key
from worker.jobs.stamps import CLOCK
from worker.repositories.base import BaseRepository
from worker.repositories.statements import statement

# Every command (all five functions) is applied in two statements, by a group of concurrent jobs,
# a bulk batch or a single job alike.
#
# 1. `lock_for.sql` (or `lock.sql`) upserts the person's `user_states` row, in key order (byte
#    order, COLLATE "C"), one statement for the whole group. ON CONFLICT DO UPDATE locks an
#    existing row even though its WHERE false writes nothing; a new row is inserted (and so held)
#    at once. Every person of the group is then locked, whether or not it has a `users` row, and
#    no command ever loses a race for a row. Concurrent groups lock in the one global key order,
#    so they cannot deadlock.
# 2. `merge.sql` runs under those locks, on a snapshot taken after them (READ COMMITTED), so it sees
#    everything committed before, and nothing can change meanwhile. Each field (provisioned, role,
#    is_active, hashed_password) carries the stamp (as_of, job id) of the newest command that wrote
#    it, and a command writes a field only when its own stamp is newer (last writer wins, field by
#    field). A newer command writes its stamps even when the values do not change, and a delete
#    resets every field at its stamp, so the result is that of applying the commands one by one in
#    stamp order. The merge writes `user_states` (stamps, intents), then `users` (insert on
#    creation, update, delete), and one audit row per command outcome (`user_changes`, keyed on
#    (key, job id), so that a re-delivered job adds none).
#
# The window: a command older than TOMBSTONE_RETENTION is refused inside the merge, under the lock,
# with the database's clock (`cutoff.sql`, the same expression the purge deletes by), so that nothing
# accepted can meet a tombstone that was purged.
#
# For single-user jobs (`apply`), `cur`, `decided` and `merged` are MATERIALIZED: inlined, each
# CASE expression is copied into every one that uses it, and planning the statement took 4.9 ms
# instead of 1.2, which a group of one job paid on every write. A bulk batch (`apply_counting`)
# inlines them: its planning is small beside its writes, and copying 1,000 wide rows three times
# is not (docs/performance.md).
#
# A person's state row whose stamps are all zero is new (or was purged); if `erase` removed the
# person earlier, its stamp is found under the key's digest (`erased_stamps`) and acts as a delete.
#
# The statements live in sql/ (worker.repositories.statements reads them on first use):
#
# - cutoff.sql: the oldest stamp still accepted, the database's clock less TOMBSTONE_RETENTION (µs);
#   the merge refuses by it and the purge deletes by it.
# - hold.sql: how statement 1 ends: a person's existing row is locked (its WHERE false writes nothing).
# - commands.sql: the commands as rows, from one array per column (`_columns`), with what each names.
# - lock.sql: statement 1 for callers that lock people without a command (`lock`, `erase`).
# - lock_for.sql: statement 1 of a merge. A person seen for the first time gets the command applied to
#   nothing right away (what the merge would write, marked with this unit of work's token), so that
#   the common case, a new user, writes its state row once; the merge checks it, and rewrites it only
#   in the rare cases where that was not the whole story (an erased stamp, or a stamp the merge's
#   later clock refuses).
# - merge.sql: statement 2, less its final SELECT; apply.sql and apply_counting.sql add that SELECT.
# - expire_intents.sql: set_user_role intents that no provision claimed within the window: reported
#   once, and kept, so that a provision arriving later still applies them (the user ends with the
#   newest role).
# - stale.sql, purge_states.sql: state rows of people with no `users` row whose every stamp is older
#   than any stamp still accepted: no command can be ordered against them any more. Locked (skipping
#   rows that commands hold), and the condition checked again on the locked version.
# - purge_erased.sql: erased stamps older than any stamp still accepted.
# - erase.sql: `erase`, once the person's state row is locked (`lock`) and has no `users` row: its
#   newest stamp moves under the key's digest (folding in one kept under a previous key), and the
#   row goes.

_CUSTOM_PLANS = text("SET LOCAL plan_cache_mode = auto")


class ExpiredIntent(NamedTuple):
    """A set_user_role that waited for its user longer than INTENT_WINDOW."""

    key: str
    role: str
    as_of: int
    job_id: str


class Applied(NamedTuple):
    """One command's effect: its status and the user's state after it (`refused`: outside the window)."""

    status: str
    user_id: int | None
    email: str
    provisioned: bool
    role: str | None
    is_active: bool


class AppliedCounts(NamedTuple):
    """A batch's statuses counted; `refused` holds the indexes of commands older than the window."""

    created: int
    updated: int
    unchanged: int
    superseded: int
    refused: list[int]


class UserCommand(TypedDict):
    """One command as the merge statement takes it (see docs/jobs.md for the functions).

    `key` is the email's identity key; `digest` and `old_digest` are the key's erasure digests
    under the current and the previous ERASURE_KEYS key (None without one).
    """

    key: str
    email: str
    function: str
    role: str | None
    hashed_password: str | None
    active: bool | None
    external_id: str | None
    as_of: int
    job_id: str
    digest: bytes | None
    old_digest: bytes | None


def _columns(commands: Sequence[UserCommand]) -> dict[str, list[Any]]:
    """The merge statement's parameters: one array per column, in the order of `commands`."""
    return {
        "keys": [c["key"] for c in commands],
        "emails": [c["email"] for c in commands],
        "functions": [c["function"] for c in commands],
        "roles": [c["role"] for c in commands],
        "hashes": [c["hashed_password"] for c in commands],
        "actives": [c["active"] for c in commands],
        "external_ids": [c["external_id"] for c in commands],
        "as_ofs": [c["as_of"] for c in commands],
        "job_ids": [c["job_id"] for c in commands],
        "digests": [c["digest"] for c in commands],
        "old_digests": [c["old_digest"] for c in commands],
    }


def _micros(seconds: float) -> int:
    return int(seconds * 1_000_000)


class UserRepository(BaseRepository[User]):
    """Users and their per-person state, looked up by identity key."""

    model = User

    async def get_user_by_key(self, key: str) -> User | None:
        """The provisioned user with this identity key, or None."""
        return await self.get_one_or_none(select(User).where(User.key == key))

    # The seed's writes, kept for applications that write in their own transaction: each is one
    # command through the merge, keyed and stamped as a job from this process would be (README,
    # "Writing without a job"), so a newer job still wins over it and it loses to newer stamps.
    # `digests` are the identity key's erasure digests (ErasureKeys.digests), if ERASURE_KEYS is set.

    async def create_user(
        self,
        *,
        email: str,
        role: str,
        hashed_password: str | None = None,
        external_id: str | None = None,
        retention: float,
        digests: tuple[bytes | None, bytes | None] = (None, None),
    ) -> Applied:
        """Provision a user, as a `provision_user` job stamped now would; the caller commits."""
        return await self._write(
            "provision_user",
            email,
            retention,
            digests,
            role=role,
            hashed_password=hashed_password,
            external_id=external_id,
        )

    async def update_user(
        self,
        *,
        email: str,
        role: str | None = None,
        is_active: bool | None = None,
        hashed_password: str | None = None,
        external_id: str | None = None,
        retention: float,
        digests: tuple[bytes | None, bytes | None] = (None, None),
    ) -> Applied:
        """Change the fields given, as an `update_user` job stamped now would; the caller commits."""
        return await self._write(
            "update_user",
            email,
            retention,
            digests,
            role=role,
            active=is_active,
            hashed_password=hashed_password,
            external_id=external_id,
        )

    async def delete_user(
        self, *, email: str, retention: float, digests: tuple[bytes | None, bytes | None] = (None, None)
    ) -> Applied:
        """Delete a user, as a `delete_user` job stamped now would; the caller commits."""
        return await self._write("delete_user", email, retention, digests)

    async def _write(
        self,
        function: str,
        email: str,
        retention: float,
        digests: tuple[bytes | None, bytes | None],
        *,
        role: str | None = None,
        active: bool | None = None,
        hashed_password: str | None = None,
        external_id: str | None = None,
    ) -> Applied:
        """One command for `email`, stamped by the process's clock under a fresh job id: lock, then merge."""
        email = normalize_email(email)
        command: UserCommand = {
            "key": identity_key(email),
            "email": email,
            "function": function,
            "role": role,
            "hashed_password": hashed_password,
            "active": active,
            "external_id": external_id,
            "as_of": CLOCK.now(),
            "job_id": uuid.uuid4().hex,
            "digest": digests[0],
            "old_digest": digests[1],
        }
        await self.lock([command["key"]])
        (applied,) = await self.apply([command], retention=retention)
        return applied

    async def lock(self, keys: Sequence[str]) -> None:
        """Lock each person's state row, creating the missing ones, in key order."""
        await self.session.execute(statement("lock"), {"keys": list(keys), "key_version": KEY_VERSION})

    async def apply(self, commands: Sequence[UserCommand], *, retention: float) -> list[Applied]:
        """Lock the commands' people in key order, then apply the commands; a row each, in order.

        One command per person (`ValueError` otherwise): one statement writes a row once.
        """
        result = await self.session.execute(
            statement("apply", materialized="MATERIALIZED "), await self._lock_for(commands, retention)
        )
        return [Applied(*row[:-1]) for row in result]  # the last column is the position

    async def apply_counting(self, commands: Sequence[UserCommand], *, retention: float) -> AppliedCounts:
        """As `apply`, for a large batch: only the statuses' counts and the refused commands' indexes.

        The batch's statements are planned for their arrays' length (`plan_cache_mode = auto` for
        the rest of the transaction), not by the generic plans a worker's connection uses.
        """
        await self.session.execute(_CUSTOM_PLANS)
        result = await self.session.execute(
            statement("apply_counting", materialized=""), await self._lock_for(commands, retention)
        )
        return AppliedCounts(*result.one())

    async def _lock_for(self, commands: Sequence[UserCommand], retention: float) -> dict[str, Any]:
        """Run the first statement for `commands`; the parameters of the second."""
        params: dict[str, Any] = dict(_columns(commands))
        if len(set(params["keys"])) != len(commands):
            raise ValueError("one command per person in a call: the same identity key appears twice")
        params |= {"retention_us": _micros(retention), "token": uuid.uuid4(), "key_version": KEY_VERSION}
        await self.session.execute(statement("lock_for"), params)
        return params

    async def expire_intents(self, *, window: float, batch: int) -> list[ExpiredIntent]:
        """Mark up to `batch` unreported set_user_role intents older than `window` s; which they were."""
        result = await self.session.execute(statement("expire_intents"), {"window": window, "batch": batch})
        return [ExpiredIntent(*row) for row in result]

    async def purge_states(self, *, retention: float, batch: int) -> int:
        """Delete up to `batch` state rows of no user whose stamps are all older than `retention` s."""
        params = {"retention_us": _micros(retention), "batch": batch}
        states = await self.session.execute(statement("purge_states"), params)
        erased = await self.session.execute(statement("purge_erased"), params)
        return int(states.rowcount) + int(erased.rowcount)  # type: ignore[attr-defined]  # DELETEs

    async def erase_state(self, key: str, digest: bytes, old_digest: bytes | None) -> int:
        """Move a locked person's stamp under `digest`, delete its state row; 1 if it held a stamp."""
        params = {"key": key, "digest": digest, "old_digest": old_digest}
        return int((await self.session.execute(statement("erase"), params)).scalar_one())
