"""Queries on `User`; the caller's session, never a commit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, TypedDict, Unpack

from sqlalchemy import delete, func, select, text

from worker.db.models import Role, User
from worker.repositories.base import BaseRepository

# Every command (all five functions) is applied by one set-based statement: a group of concurrent
# jobs, a bulk batch, or a single job. Each field (provisioned, role, is_active, hashed_password)
# carries the stamp (as_of, job id) of the newest command that wrote it, and a command writes a
# field only when its own stamp is newer (last writer wins, field by field). A newer command
# writes its stamps even when the values do not change, and a delete resets every field at its
# stamp, so the result is the same as applying the commands one by one in stamp order.
#
# An email seen for the first time gets the command applied to nothing (`ins`, in key order: the
# common case of a bulk import costs one pass over the unique index). Existing rows are locked in
# key order (`old`: FOR UPDATE returns their newest committed version), merged field by field, and
# written back (`upd`); the row lock serialises concurrent commands for one email. A command whose
# email was inserted by another transaction after this statement's snapshot is neither inserted
# nor found: it comes back `raced`, and the caller applies it again (the row is then found); so
# does a second command for the same row in one call.
#
# Each command outcome also writes one audit row (`user_changes`), keyed on (email, job id) so
# that a re-delivered job adds none.
_MERGE = """
    WITH cmd AS (
        SELECT c.email, lower(c.email) AS key, c.function, c.role, c.hash, c.as_of,
               c.job_id COLLATE "C" AS job_id, c.position,
               c.function IN ('provision_user', 'provision_users') AS provision,
               c.function = 'delete_user' AS remove,
               -- n_<field>: the command names the field (provisioned, role, active, hash)
               c.function IN ('provision_user', 'provision_users', 'delete_user') AS n_p,
               c.function <> 'deactivate_user' AS n_r,
               c.function <> 'set_user_role' AS n_a,
               c.function = 'delete_user' OR c.hash IS NOT NULL AS n_h,
               -- A second command for the same row (the caller's letter-case folding can differ from
               -- PostgreSQL's) waits for the next round: one statement writes a row once.
               row_number() OVER (PARTITION BY lower(c.email) ORDER BY c.position) > 1 AS repeat
        FROM unnest(CAST(:emails AS varchar[]), CAST(:functions AS varchar[]), CAST(:roles AS varchar[]),
                    CAST(:hashes AS varchar[]), CAST(:as_ofs AS bigint[]), CAST(:job_ids AS text[]))
             WITH ORDINALITY AS c(email, function, role, hash, as_of, job_id, position)
    ),
    ins AS (
        INSERT INTO users (email, provisioned, role, is_active, hashed_password, pending_since,
                           provisioned_as_of, provisioned_job_id, role_as_of, role_job_id,
                           active_as_of, active_job_id, password_as_of, password_job_id)
        SELECT email, provision, role, provision, hash,
               CASE WHEN function = 'set_user_role' THEN now() END,
               CASE WHEN n_p THEN as_of ELSE 0 END, CASE WHEN n_p THEN job_id ELSE '' END,
               CASE WHEN n_r THEN as_of ELSE 0 END, CASE WHEN n_r THEN job_id ELSE '' END,
               CASE WHEN n_a THEN as_of ELSE 0 END, CASE WHEN n_a THEN job_id ELSE '' END,
               CASE WHEN n_h THEN as_of ELSE 0 END, CASE WHEN n_h THEN job_id ELSE '' END
        FROM cmd
        WHERE NOT repeat
        ORDER BY key
        ON CONFLICT (lower(email)) DO NOTHING
        RETURNING id, lower(email) AS key
    ),
    old AS (
        SELECT lower(u.email) AS key, u.id, u.email, u.role, u.is_active, u.hashed_password,
               u.provisioned, u.provisioned_as_of, u.provisioned_job_id, u.role_as_of, u.role_job_id,
               u.active_as_of, u.active_job_id, u.password_as_of, u.password_job_id, u.pending_since
        FROM users u
        WHERE lower(u.email) = ANY (ARRAY(SELECT key FROM cmd WHERE NOT repeat EXCEPT SELECT key FROM ins))
        ORDER BY lower(u.email)
        FOR UPDATE
    ),
    decided AS (
        -- w_<field>: the command names the field and is newer than the field's stamp.
        SELECT cmd.*, o.id AS old_id, o.email AS old_email, o.role AS old_role, o.is_active AS old_active,
               o.hashed_password AS old_hash, o.pending_since AS old_pending,
               o.provisioned AS was_provisioned,
               cmd.n_p AND (cmd.as_of, cmd.job_id) > (o.provisioned_as_of, o.provisioned_job_id) AS w_p,
               cmd.n_r AND (cmd.as_of, cmd.job_id) > (o.role_as_of, o.role_job_id) AS w_r,
               cmd.n_a AND (cmd.as_of, cmd.job_id) > (o.active_as_of, o.active_job_id) AS w_a,
               cmd.n_h AND (cmd.as_of, cmd.job_id) > (o.password_as_of, o.password_job_id) AS w_h,
               -- every field the command names holds a newer stamp already
               (NOT cmd.n_p OR (cmd.as_of, cmd.job_id) < (o.provisioned_as_of, o.provisioned_job_id))
                 AND (NOT cmd.n_r OR (cmd.as_of, cmd.job_id) < (o.role_as_of, o.role_job_id))
                 AND (NOT cmd.n_a OR (cmd.as_of, cmd.job_id) < (o.active_as_of, o.active_job_id))
                 AND (NOT cmd.n_h OR (cmd.as_of, cmd.job_id) < (o.password_as_of, o.password_job_id))
                 AS all_newer,
               (cmd.as_of, cmd.job_id) = (o.role_as_of, o.role_job_id) AS holds_r
        FROM cmd JOIN old o USING (key)
        WHERE NOT cmd.repeat
    ),
    merged AS (
        SELECT d.*,
               CASE WHEN d.w_p THEN d.provision ELSE d.was_provisioned END AS new_provisioned,
               CASE WHEN d.w_p AND d.provision THEN d.email ELSE d.old_email END AS new_email,
               CASE WHEN d.w_r THEN d.role ELSE d.old_role END AS new_role,
               CASE WHEN d.w_a THEN d.provision ELSE d.old_active END AS new_active,
               CASE WHEN d.w_h THEN d.hash ELSE d.old_hash END AS new_hash
        FROM decided d
    ),
    n AS (
        SELECT m.*,
               m.new_provisioned AND NOT m.was_provisioned AS created,
               -- A user re-created after a delete is a new user: a new id for its new life.
               CASE WHEN m.new_provisioned AND NOT m.was_provisioned
                    THEN nextval('users_id_seq') ELSE m.old_id END AS id,
               CASE WHEN m.new_provisioned THEN NULL
                    WHEN m.w_r AND m.function = 'set_user_role' THEN now()
                    WHEN m.w_r THEN NULL
                    ELSE m.old_pending END AS new_pending,
               CASE
                   WHEN m.remove THEN
                       CASE WHEN m.was_provisioned AND NOT m.new_provisioned THEN 'deleted'
                            WHEN m.new_provisioned THEN 'superseded'
                            ELSE 'absent' END
                   WHEN NOT m.new_provisioned THEN
                       CASE m.function WHEN 'deactivate_user' THEN 'absent'
                                       WHEN 'set_user_role' THEN
                                           CASE WHEN m.w_r OR m.holds_r THEN 'pending' ELSE 'superseded' END
                                       ELSE 'superseded' END
                   WHEN NOT m.was_provisioned THEN 'created'
                   WHEN m.new_email <> m.old_email OR m.new_role IS DISTINCT FROM m.old_role
                        OR m.new_active <> m.old_active OR m.new_hash IS DISTINCT FROM m.old_hash
                       THEN 'updated'
                   WHEN m.all_newer THEN 'superseded'
                   ELSE 'unchanged'
               END AS status
        FROM merged m
    ),
    upd AS (
        UPDATE users u
        SET id = n.id, email = n.new_email, provisioned = n.new_provisioned, role = n.new_role,
            is_active = n.new_active, hashed_password = n.new_hash, pending_since = n.new_pending,
            provisioned_as_of = CASE WHEN n.w_p THEN n.as_of ELSE u.provisioned_as_of END,
            provisioned_job_id = CASE WHEN n.w_p THEN n.job_id ELSE u.provisioned_job_id END,
            role_as_of = CASE WHEN n.w_r THEN n.as_of ELSE u.role_as_of END,
            role_job_id = CASE WHEN n.w_r THEN n.job_id ELSE u.role_job_id END,
            active_as_of = CASE WHEN n.w_a THEN n.as_of ELSE u.active_as_of END,
            active_job_id = CASE WHEN n.w_a THEN n.job_id ELSE u.active_job_id END,
            password_as_of = CASE WHEN n.w_h THEN n.as_of ELSE u.password_as_of END,
            password_job_id = CASE WHEN n.w_h THEN n.job_id ELSE u.password_job_id END,
            created_at = CASE WHEN n.created THEN now() ELSE u.created_at END,
            updated_at = now()
        FROM n
        -- By key, not id: a row re-created by a concurrent transaction since our snapshot has a new id.
        WHERE lower(u.email) = n.key AND (n.w_p OR n.w_r OR n.w_a OR n.w_h)
    ),
    fresh AS (
        SELECT c.key, c.email, c.function, c.as_of, c.job_id, c.position, c.provision, c.role, c.hash, ins.id,
               CASE WHEN c.provision THEN 'created' WHEN c.function = 'set_user_role' THEN 'pending'
                    ELSE 'absent' END AS status
        FROM cmd c JOIN ins USING (key)
        WHERE NOT c.repeat
    ),
    raced AS (
        SELECT c.key, c.email, c.position
        FROM cmd c
        WHERE c.repeat
           OR (NOT EXISTS (SELECT FROM ins WHERE ins.key = c.key)
               AND NOT EXISTS (SELECT FROM old WHERE old.key = c.key))
    ),
    audit_fresh AS (
        INSERT INTO user_changes (email_key, job_id, email, user_id, function, as_of, status, was_email,
                                  was_provisioned, provisioned, was_role, role, was_active, is_active,
                                  password_changed)
        SELECT f.key, f.job_id, f.email, CASE WHEN f.provision THEN f.id END, f.function, f.as_of, f.status,
               NULL, false, f.provision, NULL, f.role, NULL, f.provision, f.hash IS NOT NULL
        FROM fresh f
        ON CONFLICT DO NOTHING
    ),
    audit_merged AS (
        INSERT INTO user_changes (email_key, job_id, email, user_id, function, as_of, status, was_email,
                                  was_provisioned, provisioned, was_role, role, was_active, is_active,
                                  password_changed)
        SELECT n.key, n.job_id, n.new_email,
               CASE WHEN n.new_provisioned OR n.status = 'deleted' THEN n.id END,
               n.function, n.as_of, n.status, n.old_email, n.was_provisioned, n.new_provisioned,
               n.old_role, n.new_role, n.old_active, n.new_active, n.new_hash IS DISTINCT FROM n.old_hash
        FROM n
        ON CONFLICT DO NOTHING
    )
"""

_APPLY = text(
    _MERGE  # noqa: S608 - constant SQL fragments, no input
    + """
    SELECT false, status, CASE WHEN new_provisioned OR status = 'deleted' THEN id END,
           new_email, new_provisioned, new_role, new_active, position
    FROM n
    UNION ALL
    SELECT false, status, CASE WHEN provision THEN id END, email, provision, role, provision, position
    FROM fresh
    UNION ALL
    SELECT true, 'raced', NULL, email, false, NULL, false, position
    FROM raced
    ORDER BY position
    """
)

_APPLY_COUNTING = text(
    _MERGE  # noqa: S608 - constant SQL fragments, no input
    + """
    SELECT count(*) FILTER (WHERE status = 'created'), count(*) FILTER (WHERE status = 'updated'),
           count(*) FILTER (WHERE status = 'unchanged'), count(*) FILTER (WHERE status = 'superseded'),
           coalesce((SELECT array_agg(position - 1 ORDER BY position) FROM raced), '{}')
    FROM (SELECT status FROM n UNION ALL SELECT status FROM fresh) AS outcomes
    """
)


# Set_user_role intents that no provision claimed in time: locked (skipping rows other
# transactions hold), then reset as if the intent had never come: the role goes back to the stamp
# of the row's last provision or delete.
_EXPIRE_INTENTS = text(
    """
    WITH expired AS (
        SELECT id, email, role, role_as_of, role_job_id
        FROM users
        WHERE pending_since IS NOT NULL AND pending_since < now() - make_interval(secs => :window)
          AND NOT provisioned
        ORDER BY pending_since
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    ),
    reset AS (
        UPDATE users u
        SET role = NULL, role_as_of = u.provisioned_as_of, role_job_id = u.provisioned_job_id,
            pending_since = NULL, updated_at = now()
        FROM expired e
        WHERE u.id = e.id
    )
    SELECT email, role, role_as_of, role_job_id FROM expired
    """
)

# Rows that are no user and whose every stamp is older than any stamp still accepted: no command
# can be ordered against them any more.
_PURGE_TOMBSTONES = text(
    """
    DELETE FROM users
    WHERE id IN (
        SELECT id FROM users
        WHERE NOT provisioned
          AND greatest(provisioned_as_of, role_as_of, active_as_of, password_as_of) < :cutoff
          AND pending_since IS NULL
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    )
    """
)


class ExpiredIntent(NamedTuple):
    """A set_user_role that waited for its user longer than INTENT_WINDOW."""

    email: str
    role: str
    as_of: int
    job_id: str


class Applied(NamedTuple):
    """One command's effect: its status and the row's state after it (`raced`: apply it again)."""

    raced: bool
    status: str
    user_id: int | None
    email: str
    provisioned: bool
    role: str | None
    is_active: bool


class AppliedCounts(NamedTuple):
    """A batch's statuses counted; `raced` holds the indexes of commands to apply again."""

    created: int
    updated: int
    unchanged: int
    superseded: int
    raced: list[int]


class UserCommand(TypedDict):
    """One command as the merge statement takes it (see docs/jobs.md for the functions)."""

    email: str
    function: str
    role: str | None
    hashed_password: str | None
    as_of: int
    job_id: str


class UserChanges(TypedDict, total=False):
    """Fields `update_user` may change."""

    email: str
    role: Role
    hashed_password: str | None
    is_active: bool


def _columns(commands: Sequence[UserCommand]) -> dict[str, list[Any]]:
    """The merge statement's parameters: one array per column, in the order of `commands`."""
    return {
        "emails": [c["email"] for c in commands],
        "functions": [c["function"] for c in commands],
        "roles": [c["role"] for c in commands],
        "hashes": [c["hashed_password"] for c in commands],
        "as_ofs": [c["as_of"] for c in commands],
        "job_ids": [c["job_id"] for c in commands],
    }


class UserRepository(BaseRepository[User]):
    """Users, looked up by id or by email in any letter case."""

    model = User

    async def create_user(
        self, *, email: str, role: Role, hashed_password: str | None = None, is_active: bool = True
    ) -> User:
        """Insert a user; a second user with the same email (any case) raises `IntegrityError`."""
        user = User(email=email, role=role, hashed_password=hashed_password, is_active=is_active)
        return await self.add(user)

    async def get_user_by_id(self, user_id: int) -> User | None:
        """The user with this id, or None."""
        return await self.get(user_id)

    async def get_user_by_email(self, email: str, *, for_update: bool = False) -> User | None:
        """The provisioned user with this email in any letter case, or None; `for_update` locks the row."""
        statement = select(User).where(func.lower(User.email) == func.lower(email), User.provisioned)
        if for_update:
            statement = statement.with_for_update()
        return await self.get_one_or_none(statement)

    async def update_user(self, user: User, **changes: Unpack[UserChanges]) -> User:
        """Apply `changes` to `user` and flush them."""
        for field, value in changes.items():
            setattr(user, field, value)
        await self.session.flush()
        return user

    async def delete_user(self, user: User) -> None:
        """Delete `user` and flush."""
        await self.delete(user)

    async def apply(self, commands: Sequence[UserCommand]) -> list[Applied]:
        """Apply commands in one statement; a row each, in order (an email's second one comes back raced)."""
        result = await self.session.execute(_APPLY, _columns(commands))
        return [Applied(*row[:-1]) for row in result]  # the last column is the position

    async def apply_counting(self, commands: Sequence[UserCommand]) -> AppliedCounts:
        """As `apply`, for a large batch: only the statuses' counts and the raced commands' indexes."""
        result = await self.session.execute(_APPLY_COUNTING, _columns(commands))
        return AppliedCounts(*result.one())

    async def expire_intents(self, *, window: float, batch: int) -> list[ExpiredIntent]:
        """Drop up to `batch` set_user_role intents older than `window` seconds; which they were."""
        result = await self.session.execute(_EXPIRE_INTENTS, {"window": window, "batch": batch})
        return [ExpiredIntent(*row) for row in result]

    async def purge_tombstones(self, *, older_than: int, batch: int) -> int:
        """Delete up to `batch` rows that are no user and whose stamps are all before `older_than` (µs)."""
        result = await self.session.execute(_PURGE_TOMBSTONES, {"cutoff": older_than, "batch": batch})
        return int(result.rowcount)  # type: ignore[attr-defined]  # CursorResult of a DELETE

    async def erase_stamps(self, email: str) -> int:
        """Delete the row of `email` (any letter case) if it is no user: a tombstone or early intents."""
        result = await self.session.execute(
            delete(User).where(func.lower(User.email) == func.lower(email), User.provisioned.is_(False))
        )
        return int(result.rowcount)  # type: ignore[attr-defined]  # CursorResult of a DELETE

    async def list_users(self, *, limit: int = 100, offset: int = 0) -> Sequence[User]:
        """A page of provisioned users in id order."""
        statement = select(User).where(User.provisioned).order_by(User.id).limit(limit).offset(offset)
        return (await self.session.scalars(statement)).all()
