"""Queries on users and their per-person state; the caller's session, never a commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple, TypedDict

from sqlalchemy import select, text

from worker.db.models import User
from worker.jobs.identity import KEY_VERSION
from worker.repositories.base import BaseRepository

# Every command (all five functions) is applied in two statements, by a group of concurrent jobs,
# a bulk batch or a single job alike.
#
# 1. `_LOCK` upserts the person's `user_states` row, in key order (byte order, COLLATE "C"), one
#    statement for the whole group. ON CONFLICT DO UPDATE locks an existing row even though its
#    WHERE false writes nothing; a new row is inserted (and so held) at once. Every person of the
#    group is then locked, whether or not it has a `users` row, and no command ever loses a race
#    for a row. Concurrent groups lock in the one global key order, so they cannot deadlock.
# 2. `_MERGE` runs under those locks, on a snapshot taken after them (READ COMMITTED), so it sees
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
# with the database's clock (`_CUTOFF`, the same expression the purge deletes by), so that nothing
# accepted can meet a tombstone that was purged.
#
# For single-user jobs (`_APPLY`), `cur`, `decided` and `merged` are MATERIALIZED: inlined, each
# CASE expression is copied into every one that uses it, and planning the statement took 4.9 ms
# instead of 1.2, which a group of one job paid on every write. A bulk batch (`_APPLY_COUNTING`)
# inlines them: its planning is small beside its writes, and copying 1,000 wide rows three times
# is not (docs/performance.md).
#
# A person's state row whose stamps are all zero is new (or was purged); if `erase` removed the
# person earlier, its stamp is found under the key's digest (`erased_stamps`) and acts as a delete.

_CUTOFF = "(floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint - CAST(:retention_us AS bigint))"
"""The oldest stamp still accepted: the database's clock less TOMBSTONE_RETENTION (µs)."""

_HOLD = "ON CONFLICT (key) DO UPDATE SET key_version = EXCLUDED.key_version WHERE false"
"""How statement 1 ends: a person's existing row is locked (its WHERE false writes nothing)."""

_COMMANDS = """
    SELECT c.key COLLATE "C" AS key, c.email, c.function, c.role, c.hash, c.active, c.external_id, c.as_of,
           c.job_id COLLATE "C" AS job_id, c.digest, c.old_digest, c.position,
           c.function IN ('provision_user', 'provision_users') AS provision,
           c.function = 'update_user' AS updates,
           -- n_<field>: the command names the field (provisioned, role, active, hash, external id);
           -- update_user names exactly the fields it carries
           c.function IN ('provision_user', 'provision_users', 'delete_user') AS n_p,
           CASE WHEN c.function = 'update_user' THEN c.role IS NOT NULL
                ELSE c.function <> 'deactivate_user' END AS n_r,
           CASE WHEN c.function = 'update_user' THEN c.active IS NOT NULL
                ELSE c.function <> 'set_user_role' END AS n_a,
           c.function = 'delete_user' OR c.hash IS NOT NULL AS n_h,
           c.function = 'delete_user' OR c.external_id IS NOT NULL AS n_x
    FROM unnest(CAST(:keys AS text[]), CAST(:emails AS varchar[]), CAST(:functions AS varchar[]),
                CAST(:roles AS varchar[]), CAST(:hashes AS varchar[]), CAST(:actives AS boolean[]),
                CAST(:external_ids AS varchar[]), CAST(:as_ofs AS bigint[]), CAST(:job_ids AS text[]),
                CAST(:digests AS bytea[]), CAST(:old_digests AS bytea[]))
         WITH ORDINALITY
         AS c(key, email, function, role, hash, active, external_id, as_of, job_id, digest, old_digest,
              position)
"""

# Statement 1 of a merge. A person seen for the first time gets the command applied to nothing
# right away (what the merge would write, marked with this unit of work's token), so that the
# common case, a new user, writes its state row once; the merge checks it, and rewrites it only in
# the rare cases where that was not the whole story (an erased stamp, or a stamp the merge's later
# clock refuses).
_LOCK_FOR = text(
    f"""
    INSERT INTO user_states (key, key_version, inserted_by, role, pending_since,
                             provisioned_as_of, provisioned_job_id, role_as_of, role_job_id,
                             active_as_of, active_job_id, password_as_of, password_job_id,
                             external_id_as_of, external_id_job_id)
    SELECT key, CAST(:key_version AS smallint), CAST(:token AS uuid),
           CASE WHEN ok AND function = 'set_user_role' THEN role END,
           CASE WHEN ok AND function = 'set_user_role' THEN now() END,
           CASE WHEN ok AND n_p THEN as_of ELSE 0 END, CASE WHEN ok AND n_p THEN job_id ELSE '' END,
           CASE WHEN ok AND n_r THEN as_of ELSE 0 END, CASE WHEN ok AND n_r THEN job_id ELSE '' END,
           CASE WHEN ok AND n_a THEN as_of ELSE 0 END, CASE WHEN ok AND n_a THEN job_id ELSE '' END,
           CASE WHEN ok AND n_h THEN as_of ELSE 0 END, CASE WHEN ok AND n_h THEN job_id ELSE '' END,
           CASE WHEN ok AND n_x THEN as_of ELSE 0 END, CASE WHEN ok AND n_x THEN job_id ELSE '' END
    FROM (SELECT cmd.*, cmd.as_of >= {_CUTOFF} AND NOT cmd.updates AS ok FROM ({_COMMANDS}) cmd) c
    ORDER BY key
    {_HOLD}
    """  # noqa: S608 - constant SQL fragments, no input
)

_LOCK = text(
    f"""
    INSERT INTO user_states (key, key_version)
    SELECT DISTINCT k COLLATE "C", CAST(:key_version AS smallint)
    FROM unnest(CAST(:keys AS text[])) AS k
    ORDER BY 1
    {_HOLD}
    """  # noqa: S608 - constant SQL fragments, no input
)

_MERGE = f"""
    WITH clock AS (SELECT {_CUTOFF} AS cutoff),
    cmd AS (
        SELECT c.*, c.as_of < (SELECT cutoff FROM clock) AS refused FROM ({_COMMANDS}) c
    ),
    locked AS (
        -- The person as the first statement locked it. A row that statement inserted (its token),
        -- or one with no stamp at all, is a person seen for the first time: blank, unless `erase`
        -- left their stamp, which then stands as a delete.
        SELECT c.*, s.inserted_by = CAST(:token AS uuid) AS fresh,
               s.inserted_by = CAST(:token AS uuid)
                 OR (u.id IS NULL AND s.provisioned_as_of = 0 AND s.role_as_of = 0 AND s.active_as_of = 0
                     AND s.password_as_of = 0 AND s.external_id_as_of = 0) AS blank,
               s.role AS s_role, s.is_active AS s_active, s.hashed_password AS s_hash,
               s.external_id AS s_external_id,
               s.pending_since AS s_pending, s.intent_reported AS s_reported,
               s.provisioned_as_of AS s_p_as_of, s.provisioned_job_id AS s_p_job_id,
               s.role_as_of AS s_r_as_of, s.role_job_id AS s_r_job_id,
               s.active_as_of AS s_a_as_of, s.active_job_id AS s_a_job_id,
               s.password_as_of AS s_h_as_of, s.password_job_id AS s_h_job_id,
               s.external_id_as_of AS s_x_as_of, s.external_id_job_id AS s_x_job_id,
               u.id AS old_id, u.email AS old_email, u.role AS u_role, u.is_active AS u_active,
               u.hashed_password AS row_hash, u.external_id AS u_external_id
        FROM cmd c
        JOIN user_states s ON s.key = c.key
        LEFT JOIN users u ON u.key = c.key
    ),
    cur AS {{materialized}}(
        SELECT l.*, l.old_id IS NOT NULL AS was_provisioned,
               -- each field as it stands: the users row's, else (no row) the state row's
               CASE WHEN l.blank THEN NULL ELSE coalesce(l.u_role, l.s_role) END AS old_role,
               CASE WHEN l.old_id IS NOT NULL THEN l.u_active WHEN l.blank THEN false
                    ELSE coalesce(l.s_active, false) END AS old_active,
               CASE WHEN l.old_id IS NOT NULL THEN l.row_hash WHEN l.blank THEN NULL
                    ELSE l.s_hash END AS old_hash,
               CASE WHEN l.old_id IS NOT NULL THEN l.u_external_id WHEN l.blank THEN NULL
                    ELSE l.s_external_id END AS old_external_id,
               CASE WHEN l.blank THEN NULL ELSE l.s_pending END AS old_pending,
               NOT l.blank AND l.s_reported AS old_reported, e.as_of IS NOT NULL AS unerased,
               CASE WHEN l.blank THEN coalesce(e.as_of, 0) ELSE l.s_p_as_of END AS p_as_of,
               CASE WHEN l.blank THEN coalesce(e.job_id, '') ELSE l.s_p_job_id END AS p_job_id,
               CASE WHEN l.blank THEN coalesce(e.as_of, 0) ELSE l.s_r_as_of END AS r_as_of,
               CASE WHEN l.blank THEN coalesce(e.job_id, '') ELSE l.s_r_job_id END AS r_job_id,
               CASE WHEN l.blank THEN coalesce(e.as_of, 0) ELSE l.s_a_as_of END AS a_as_of,
               CASE WHEN l.blank THEN coalesce(e.job_id, '') ELSE l.s_a_job_id END AS a_job_id,
               CASE WHEN l.blank THEN coalesce(e.as_of, 0) ELSE l.s_h_as_of END AS h_as_of,
               CASE WHEN l.blank THEN coalesce(e.job_id, '') ELSE l.s_h_job_id END AS h_job_id,
               CASE WHEN l.blank THEN coalesce(e.as_of, 0) ELSE l.s_x_as_of END AS x_as_of,
               CASE WHEN l.blank THEN coalesce(e.job_id, '') ELSE l.s_x_job_id END AS x_job_id
        FROM locked l
        LEFT JOIN LATERAL (
            SELECT x.as_of, x.job_id COLLATE "C" AS job_id FROM erased_stamps x
            WHERE l.blank AND x.digest IN (l.digest, l.old_digest)
              AND EXISTS (SELECT FROM erased_stamps)  -- once per statement: mostly there are none
            ORDER BY x.as_of DESC, x.job_id DESC
            LIMIT 1
        ) e ON true
    ),
    decided AS {{materialized}}(
        -- w_<field>: the command names the field and is newer than the field's stamp; an update_user
        -- writes only a provisioned person (before the provision it waits, and its job tries again).
        SELECT c.*,
               NOT c.refused AND c.n_p AND (c.as_of, c.job_id) > (c.p_as_of, c.p_job_id) AS w_p,
               c.go AND c.n_r AND (c.as_of, c.job_id) > (c.r_as_of, c.r_job_id) AS w_r,
               c.go AND c.n_a AND (c.as_of, c.job_id) > (c.a_as_of, c.a_job_id) AS w_a,
               c.go AND c.n_h AND (c.as_of, c.job_id) > (c.h_as_of, c.h_job_id) AS w_h,
               c.go AND c.n_x AND (c.as_of, c.job_id) > (c.x_as_of, c.x_job_id) AS w_x,
               -- every field the command names holds a newer stamp already
               (NOT c.n_p OR (c.as_of, c.job_id) < (c.p_as_of, c.p_job_id))
                 AND (NOT c.n_r OR (c.as_of, c.job_id) < (c.r_as_of, c.r_job_id))
                 AND (NOT c.n_a OR (c.as_of, c.job_id) < (c.a_as_of, c.a_job_id))
                 AND (NOT c.n_h OR (c.as_of, c.job_id) < (c.h_as_of, c.h_job_id))
                 AND (NOT c.n_x OR (c.as_of, c.job_id) < (c.x_as_of, c.x_job_id))
                 AS all_newer,
               (c.as_of, c.job_id) = (c.r_as_of, c.r_job_id) AS holds_r
        FROM (SELECT cur.*, NOT cur.refused AND (NOT cur.updates OR cur.was_provisioned) AS go FROM cur) c
    ),
    merged AS {{materialized}}(
        SELECT d.*,
               CASE WHEN d.w_p THEN d.provision ELSE d.was_provisioned END AS new_provisioned,
               CASE WHEN d.w_p AND d.provision THEN d.email ELSE d.old_email END AS new_email,
               CASE WHEN d.w_r THEN d.role ELSE d.old_role END AS new_role,
               CASE WHEN NOT d.w_a THEN d.old_active WHEN d.updates THEN d.active ELSE d.provision END
                 AS new_active,
               CASE WHEN d.w_h THEN d.hash ELSE d.old_hash END AS new_hash,
               CASE WHEN d.w_x THEN d.external_id ELSE d.old_external_id END AS new_external_id
        FROM decided d
    ),
    n AS (
        SELECT m.*,
               m.w_p OR m.w_r OR m.w_a OR m.w_h OR m.w_x AS wins,
               CASE WHEN m.new_provisioned THEN NULL
                    WHEN m.w_r AND m.function = 'set_user_role' THEN now()
                    WHEN m.w_r THEN NULL
                    ELSE m.old_pending END AS new_pending,
               CASE
                   WHEN m.refused THEN 'refused'
                   WHEN m.new_provisioned AND NOT m.was_provisioned THEN 'created'
                   WHEN m.was_provisioned AND NOT m.new_provisioned THEN 'deleted'
                   WHEN NOT m.new_provisioned THEN
                       CASE m.function WHEN 'deactivate_user' THEN 'absent'
                                       WHEN 'delete_user' THEN 'absent'
                                       WHEN 'set_user_role' THEN
                                           CASE WHEN m.w_r OR m.holds_r THEN 'pending' ELSE 'superseded' END
                                       WHEN 'update_user' THEN
                                           -- newer than the last provision or delete: its user may come
                                           CASE WHEN (m.as_of, m.job_id) > (m.p_as_of, m.p_job_id)
                                                THEN 'waiting' ELSE 'superseded' END
                                       ELSE 'superseded' END
                   WHEN m.new_email <> m.old_email OR m.new_role IS DISTINCT FROM m.old_role
                        OR m.new_active <> m.old_active OR m.new_hash IS DISTINCT FROM m.old_hash
                        OR m.new_external_id IS DISTINCT FROM m.old_external_id
                       THEN 'updated'
                   WHEN m.all_newer THEN 'superseded'
                   ELSE 'unchanged'
               END AS status
        FROM merged m
    ),
    state AS (
        UPDATE user_states s
        SET role = CASE WHEN n.new_provisioned THEN NULL ELSE n.new_role END,
            is_active = CASE WHEN n.new_provisioned THEN NULL ELSE n.new_active END,
            hashed_password = CASE WHEN n.new_provisioned THEN NULL ELSE n.new_hash END,
            external_id = CASE WHEN n.new_provisioned THEN NULL ELSE n.new_external_id END,
            provisioned_as_of = CASE WHEN n.w_p THEN n.as_of ELSE n.p_as_of END,
            provisioned_job_id = CASE WHEN n.w_p THEN n.job_id ELSE n.p_job_id END,
            role_as_of = CASE WHEN n.w_r THEN n.as_of ELSE n.r_as_of END,
            role_job_id = CASE WHEN n.w_r THEN n.job_id ELSE n.r_job_id END,
            active_as_of = CASE WHEN n.w_a THEN n.as_of ELSE n.a_as_of END,
            active_job_id = CASE WHEN n.w_a THEN n.job_id ELSE n.a_job_id END,
            password_as_of = CASE WHEN n.w_h THEN n.as_of ELSE n.h_as_of END,
            password_job_id = CASE WHEN n.w_h THEN n.job_id ELSE n.h_job_id END,
            external_id_as_of = CASE WHEN n.w_x THEN n.as_of ELSE n.x_as_of END,
            external_id_job_id = CASE WHEN n.w_x THEN n.job_id ELSE n.x_job_id END,
            pending_since = n.new_pending,
            intent_reported = n.new_pending IS NOT NULL AND n.new_pending = n.old_pending AND n.old_reported,
            updated_at = now()
        FROM n
        WHERE s.key = n.key
          AND CASE WHEN n.fresh THEN n.refused OR n.unerased ELSE n.wins OR n.unerased END
    ),
    created AS (
        INSERT INTO users (key, email, role, is_active, hashed_password, external_id)
        SELECT key, new_email, new_role, new_active, new_hash, new_external_id
        FROM n
        WHERE status = 'created'
        ORDER BY key
        RETURNING id, key
    ),
    changed AS (
        UPDATE users u
        SET email = n.new_email, role = n.new_role, is_active = n.new_active, hashed_password = n.new_hash,
            external_id = n.new_external_id, updated_at = now()
        FROM n
        WHERE u.key = n.key AND n.status = 'updated'
    ),
    removed AS (
        DELETE FROM users u USING n WHERE u.key = n.key AND n.status = 'deleted'
    ),
    outcome AS (
        SELECT n.*, coalesce(n.old_id, created.id) AS id
        FROM n LEFT JOIN created USING (key)
    ),
    audit AS (
        INSERT INTO user_changes (email_key, job_id, email, user_id, function, as_of, status, was_email,
                                  was_provisioned, provisioned, was_role, role, was_active, is_active,
                                  password_changed)
        SELECT o.key, o.job_id, CASE WHEN o.new_provisioned THEN o.new_email ELSE o.email END,
               CASE WHEN o.new_provisioned OR o.was_provisioned THEN o.id END,
               o.function, o.as_of, o.status, o.old_email, o.was_provisioned, o.new_provisioned,
               CASE WHEN o.was_provisioned THEN o.old_role END,
               CASE WHEN o.new_provisioned THEN o.new_role END,
               CASE WHEN o.was_provisioned THEN o.old_active END,
               CASE WHEN o.new_provisioned THEN o.new_active END,
               -- the users row's hash before and after (a state row's kept hash is no password change)
               CASE WHEN o.new_provisioned THEN o.new_hash END IS DISTINCT FROM o.row_hash
        FROM outcome o
        -- An update_user that waits for its user is tried again under its job id, and one that
        -- changed nothing (an identity provider re-sending full state) is no event.
        WHERE NOT o.refused AND NOT (o.updates AND o.status IN ('waiting', 'unchanged'))
        ON CONFLICT DO NOTHING
    )
"""  # noqa: S608 - constant SQL fragments, no input

_APPLY = text(
    _MERGE.format(materialized="MATERIALIZED ")  # noqa: S608 - constant SQL fragments, no input
    + """
    SELECT status, CASE WHEN new_provisioned OR status = 'deleted' THEN id END,
           CASE WHEN new_provisioned THEN new_email ELSE email END, new_provisioned,
           CASE WHEN new_provisioned THEN new_role END, new_provisioned AND new_active, position
    FROM outcome
    ORDER BY position
    """
)

_APPLY_COUNTING = text(
    _MERGE.format(materialized="")  # noqa: S608 - constant SQL fragments, no input
    + """
    SELECT count(*) FILTER (WHERE status = 'created'), count(*) FILTER (WHERE status = 'updated'),
           count(*) FILTER (WHERE status = 'unchanged'), count(*) FILTER (WHERE status = 'superseded'),
           coalesce(array_agg(position - 1 ORDER BY position) FILTER (WHERE status = 'refused'), '{}')
    FROM n
    """
)

# Set_user_role intents that no provision claimed within the window: reported once, and kept, so
# that a provision arriving later still applies them (the user ends with the newest role).
_EXPIRE_INTENTS = text(
    """
    WITH expired AS (
        SELECT key, role, role_as_of, role_job_id
        FROM user_states
        WHERE pending_since IS NOT NULL AND NOT intent_reported
          AND pending_since < now() - make_interval(secs => :window)
        ORDER BY pending_since
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    ),
    marked AS (
        UPDATE user_states s SET intent_reported = true FROM expired e WHERE s.key = e.key
    )
    SELECT key, role, role_as_of, role_job_id FROM expired
    """
)

# State rows of people with no `users` row whose every stamp is older than any stamp still
# accepted: no command can be ordered against them any more. Locked (skipping rows that commands
# hold), and the condition checked again on the locked version.
_STALE = f"""
    greatest(s.provisioned_as_of, s.role_as_of, s.active_as_of, s.password_as_of, s.external_id_as_of)
      < {_CUTOFF}
    AND (s.pending_since IS NULL OR s.intent_reported)
    AND NOT EXISTS (SELECT FROM users u WHERE u.key = s.key)
"""
_PURGE_STATES = text(
    f"""
    DELETE FROM user_states d
    USING (SELECT s.key FROM user_states s WHERE {_STALE} LIMIT :batch FOR UPDATE OF s SKIP LOCKED) doomed
    WHERE d.key = doomed.key
    """  # noqa: S608 - constant SQL fragments, no input
)
_PURGE_ERASED = text(
    f"""
    DELETE FROM erased_stamps
    WHERE digest IN (SELECT digest FROM erased_stamps WHERE as_of < {_CUTOFF} LIMIT :batch)
    """  # noqa: S608 - constant SQL fragments, no input
)

# `erase`, once the person's state row is locked (`_LOCK`) and has no `users` row: its newest stamp
# moves under the key's digest (folding in one kept under a previous key), and the row goes.
_ERASE = text(
    """
    WITH doomed AS (
        DELETE FROM user_states s
        WHERE s.key = CAST(:key AS text) AND NOT EXISTS (SELECT FROM users u WHERE u.key = s.key)
        RETURNING s.*
    ),
    stamps AS (
        SELECT as_of, job_id COLLATE "C" AS job_id FROM doomed, LATERAL (VALUES
            (provisioned_as_of, provisioned_job_id), (role_as_of, role_job_id),
            (active_as_of, active_job_id), (password_as_of, password_job_id),
            (external_id_as_of, external_id_job_id)) AS f(as_of, job_id)
        UNION ALL
        SELECT as_of, job_id FROM erased_stamps
        WHERE digest IN (CAST(:digest AS bytea), CAST(:old_digest AS bytea))
    ),
    newest AS (
        SELECT as_of, job_id FROM stamps WHERE as_of > 0 ORDER BY as_of DESC, job_id DESC LIMIT 1
    ),
    previous AS (
        DELETE FROM erased_stamps WHERE digest = CAST(:old_digest AS bytea)
    ),
    kept AS (
        INSERT INTO erased_stamps (digest, as_of, job_id)
        SELECT CAST(:digest AS bytea), as_of, job_id FROM newest
        ON CONFLICT (digest) DO UPDATE SET as_of = EXCLUDED.as_of, job_id = EXCLUDED.job_id, erased_at = now()
    )
    SELECT count(*) FROM doomed
    WHERE greatest(provisioned_as_of, role_as_of, active_as_of, password_as_of, external_id_as_of) > 0
    """
)


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

    async def lock(self, keys: Sequence[str]) -> None:
        """Lock each person's state row, creating the missing ones, in key order."""
        await self.session.execute(_LOCK, {"keys": list(keys), "key_version": KEY_VERSION})

    async def apply(self, commands: Sequence[UserCommand], *, retention: float) -> list[Applied]:
        """Lock the commands' people in key order, then apply the commands; a row each, in order.

        One command per person (`ValueError` otherwise): one statement writes a row once.
        """
        result = await self.session.execute(_APPLY, await self._lock_for(commands, retention))
        return [Applied(*row[:-1]) for row in result]  # the last column is the position

    async def apply_counting(self, commands: Sequence[UserCommand], *, retention: float) -> AppliedCounts:
        """As `apply`, for a large batch: only the statuses' counts and the refused commands' indexes.

        The batch's statements are planned for their arrays' length (`plan_cache_mode = auto` for
        the rest of the transaction), not by the generic plans a worker's connection uses.
        """
        await self.session.execute(_CUSTOM_PLANS)
        result = await self.session.execute(_APPLY_COUNTING, await self._lock_for(commands, retention))
        return AppliedCounts(*result.one())

    async def _lock_for(self, commands: Sequence[UserCommand], retention: float) -> dict[str, Any]:
        """Run the first statement for `commands`; the parameters of the second."""
        params: dict[str, Any] = dict(_columns(commands))
        if len(set(params["keys"])) != len(commands):
            raise ValueError("one command per person in a call: the same identity key appears twice")
        params |= {"retention_us": _micros(retention), "token": uuid.uuid4(), "key_version": KEY_VERSION}
        await self.session.execute(_LOCK_FOR, params)
        return params

    async def expire_intents(self, *, window: float, batch: int) -> list[ExpiredIntent]:
        """Mark up to `batch` unreported set_user_role intents older than `window` s; which they were."""
        result = await self.session.execute(_EXPIRE_INTENTS, {"window": window, "batch": batch})
        return [ExpiredIntent(*row) for row in result]

    async def purge_states(self, *, retention: float, batch: int) -> int:
        """Delete up to `batch` state rows of no user whose stamps are all older than `retention` s."""
        params = {"retention_us": _micros(retention), "batch": batch}
        states = await self.session.execute(_PURGE_STATES, params)
        erased = await self.session.execute(_PURGE_ERASED, params)
        return int(states.rowcount) + int(erased.rowcount)  # type: ignore[attr-defined]  # DELETEs

    async def erase_state(self, key: str, digest: bytes, old_digest: bytes | None) -> int:
        """Move a locked person's stamp under `digest`, delete its state row; 1 if it held a stamp."""
        params = {"key": key, "digest": digest, "old_digest": old_digest}
        return int((await self.session.execute(_ERASE, params)).scalar_one())
