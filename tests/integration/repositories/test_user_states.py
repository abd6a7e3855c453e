"""One identity per person, no ghost users (issue 17): the merge on real PostgreSQL, through the services.

Each test closes one hole: emails PostgreSQL's lower() merged or split wrongly (1), `users` rows for
people never provisioned (2), bulk batches whose keys collide only under some case mapping (3),
expired intents that were dropped rather than reported (4), `erase` forgetting the stamp that
protects against older commands (5), and a retention window read from two clocks (6).
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import time
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.settings import TEST_ERASURE_KEY
from worker.db.session import SessionFactory
from worker.jobs.identity import identity_key
from worker.jobs.payloads import (
    DeactivateUser,
    DeleteUser,
    ProvisionUser,
    RoleName,
    SetUserRole,
    UserRef,
    parse_bulk_entries,
)
from worker.jobs.stamps import MICROS, Stamp, now_micros
from worker.passwords.policy import hash_password
from worker.repositories.user import Applied, ExpiredIntent, UserCommand
from worker.runtime.group_commit import CommandGroups
from worker.services import maintenance, users
from worker.services.erasure import NO_ERASURE_KEYS, ErasureKeys
from worker.services.maintenance import ErasureNotConfigured
from worker.services.outcome import UserOutcome
from worker.services.unit_of_work import SqlAlchemyUnitOfWork

HASH_A = hash_password("first passphrase")
HASH_B = hash_password("second passphrase")
KEYS = ErasureKeys([TEST_ERASURE_KEY])
RETENTION = 3600.0
_job_numbers = itertools.count()


def command(
    function: str,
    email: str,
    as_of: int,
    *,
    role: RoleName | None = None,
    password_hash: str | None = None,
    job_id: str | None = None,
    erasure: ErasureKeys = KEYS,
) -> UserCommand:
    """A validated job payload turned into the merge's command, as the task does it."""
    user: UserRef
    if function == "provision_user":
        assert role is not None
        user = ProvisionUser(email=email, role=role, password_hash=password_hash)
    elif function == "set_user_role":
        assert role is not None
        user = SetUserRole(email=email, role=role)
    elif function == "deactivate_user":
        user = DeactivateUser(email=email)
    else:
        user = DeleteUser(email=email)
    stamp = Stamp(as_of, job_id or f"job-{function}-{next(_job_numbers):06d}")
    return users.user_command(function, user, stamp, erasure)


class Db:
    """The test's committing sessions and read-only looks at the tables."""

    def __init__(self, sessions: SessionFactory, engine: AsyncEngine) -> None:
        self.sessions = sessions
        self.engine = engine
        self.base = now_micros() - 600 * MICROS  # ten minutes ago: well inside RETENTION

    def t(self, seconds: float) -> int:
        """A stamp `seconds` after the test's base instant."""
        return self.base + int(seconds * MICROS)

    async def apply(self, *commands: UserCommand, retention: float = RETENTION) -> list[UserOutcome]:
        uow = SqlAlchemyUnitOfWork(self.sessions)
        return await users.apply_commands(uow, list(commands), retention=retention)

    async def one(self, cmd: UserCommand, retention: float = RETENTION) -> UserOutcome:
        (outcome,) = await self.apply(cmd, retention=retention)
        return outcome

    async def dry_run(self, *commands: UserCommand) -> list[Applied]:
        """What the merge would do, in a transaction that is rolled back."""
        async with SqlAlchemyUnitOfWork(self.sessions) as uow:
            await uow.users.lock([c["key"] for c in commands])
            return await uow.users.apply(commands, retention=RETENTION)

    async def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        async with self.engine.connect() as conn:
            return [tuple(row) for row in await conn.execute(text(sql), params)]

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar_one()

    async def user(self, email: str) -> tuple[Any, ...] | None:
        """(id, email, role, is_active, hashed_password) of the person's users row, or None."""
        found = await self.rows(
            "SELECT id, email, role, is_active, hashed_password FROM users WHERE key = :key",
            key=identity_key(email),
        )
        assert len(found) <= 1
        return found[0] if found else None

    async def state(self, email: str) -> dict[str, Any] | None:
        """The person's user_states row, by column name, or None."""
        async with self.engine.connect() as conn:
            result = await conn.execute(
                text("SELECT * FROM user_states WHERE key = :key"), {"key": identity_key(email)}
            )
            found = result.mappings().one_or_none()
        return dict(found) if found is not None else None


@pytest.fixture
async def db(committing_sessions: SessionFactory, engine: AsyncEngine) -> Db:
    async with engine.begin() as conn:  # a clean slate, whatever ran before
        await conn.execute(text("TRUNCATE users, user_states, erased_stamps, user_changes RESTART IDENTITY"))
    return Db(committing_sessions, engine)


# Hole 1: two spellings, one account; one spelling, two accounts.


async def test_dotted_capital_i_is_another_person_than_capital_i(db: Db) -> None:
    ivan = await db.one(
        command("provision_user", "Ivan@x.example", db.t(1), role="member", password_hash=HASH_A)
    )
    dotted = await db.one(
        command("provision_user", "İvan@x.example", db.t(2), role="admin", password_hash=HASH_B)
    )

    assert (ivan.status, dotted.status) == ("created", "created")
    assert ivan.user_id != dotted.user_id
    assert await db.rows("SELECT id, email, role, hashed_password FROM users ORDER BY id") == [
        (ivan.user_id, "Ivan@x.example", "member", HASH_A),
        (dotted.user_id, "İvan@x.example", "admin", HASH_B),
    ]


async def test_letter_case_and_idna_spellings_are_one_person(db: Db) -> None:
    first = await db.one(command("provision_user", "Ivan@x.example", db.t(1), role="viewer"))
    upper = await db.one(command("provision_user", "IVAN@x.example", db.t(2), role="member"))
    domain = await db.one(command("provision_user", "ivan@X.EXAMPLE", db.t(3), role="member"))
    unicode_domain = await db.one(command("provision_user", "ada@bücher.example", db.t(4), role="viewer"))
    ascii_domain = await db.one(command("provision_user", "ada@xn--bcher-kva.example", db.t(5), role="admin"))

    assert [o.status for o in (first, upper, domain, unicode_domain, ascii_domain)] == [
        "created",
        "updated",
        "updated",
        "created",
        "updated",
    ]
    assert first.user_id == upper.user_id == domain.user_id
    assert unicode_domain.user_id == ascii_domain.user_id
    assert await db.rows("SELECT id, key, email, role FROM users ORDER BY id") == [
        (first.user_id, "ivan@x.example", "ivan@x.example", "member"),
        (unicode_domain.user_id, "ada@xn--bcher-kva.example", "ada@bücher.example", "admin"),
    ]


async def test_a_command_group_writes_two_rows_for_ivan_and_dotted_ivan(db: Db) -> None:
    groups = CommandGroups(db.sessions, retention=RETENTION)

    ivan, dotted = await asyncio.gather(
        groups.apply(command("provision_user", "Ivan@x.example", db.t(1), role="member")),
        groups.apply(command("provision_user", "İvan@x.example", db.t(1), role="admin")),
    )

    assert (ivan.status, ivan.role, dotted.status, dotted.role) == ("created", "member", "created", "admin")
    assert ivan.user_id != dotted.user_id
    rows = await db.rows("SELECT email, role, created_at FROM users ORDER BY id")
    assert [row[:2] for row in rows] == [("Ivan@x.example", "member"), ("İvan@x.example", "admin")]
    assert rows[0][2] == rows[1][2]  # now() of one transaction: the two were one group


async def test_a_batch_creates_ivan_and_dotted_ivan(db: Db) -> None:
    valid, rejected = await parse_bulk_entries(
        [{"email": "Ivan@x.example", "role": "member"}, {"email": "İvan@x.example", "role": "admin"}]
    )
    assert rejected == []
    entries = users.bulk_commands(valid, Stamp(db.t(1), "bulk-job"), KEYS)

    uow = SqlAlchemyUnitOfWork(db.sessions)
    outcome = await users.provision_users(uow, entries, rejected, retention=RETENTION)

    assert outcome.as_result() == {
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "superseded": 0,
        "rejected": 0,
        "rejections": [],
    }
    assert await db.rows("SELECT email, role FROM users ORDER BY id") == [
        ("Ivan@x.example", "member"),
        ("İvan@x.example", "admin"),
    ]


# Hole 2: commands for people never provisioned leave no users row.


async def test_commands_for_unknown_people_leave_no_users_row_but_keep_their_stamps(db: Db) -> None:
    intent, deactivated, deleted = await db.apply(
        command("set_user_role", "early@x.example", db.t(5), role="admin"),
        command("deactivate_user", "off@x.example", db.t(5)),
        command("delete_user", "gone@x.example", db.t(5)),
    )

    assert [(o.status, o.user_id, o.role, o.is_active) for o in (intent, deactivated, deleted)] == [
        ("pending", None, None, None),
        ("absent", None, None, None),
        ("absent", None, None, None),
    ]
    assert await db.scalar("SELECT count(*) FROM users") == 0
    fields = "key, role, provisioned_as_of, role_as_of, active_as_of, password_as_of"
    assert await db.rows(f"SELECT {fields} FROM user_states ORDER BY key") == [  # noqa: S608
        ("early@x.example", "admin", 0, db.t(5), 0, 0),
        ("gone@x.example", None, db.t(5), db.t(5), db.t(5), db.t(5)),
        ("off@x.example", None, 0, 0, db.t(5), 0),
    ]
    assert await db.scalar("SELECT count(*) FROM user_states WHERE pending_since IS NOT NULL") == 1
    assert await db.rows(
        "SELECT email_key, status, user_id, provisioned FROM user_changes ORDER BY email_key"
    ) == [
        ("early@x.example", "pending", None, False),
        ("gone@x.example", "absent", None, False),
        ("off@x.example", "absent", None, False),
    ]


async def test_a_provision_older_than_an_early_intent_takes_the_intents_role(db: Db) -> None:
    await db.apply(
        command("set_user_role", "early@x.example", db.t(5), role="admin"),
        command("set_user_role", "late@x.example", db.t(5), role="admin"),
        command("deactivate_user", "off@x.example", db.t(5)),
        command("delete_user", "gone@x.example", db.t(5)),
    )

    older, newer, off, gone = await db.apply(
        command("provision_user", "early@x.example", db.t(3), role="member"),
        command("provision_user", "late@x.example", db.t(7), role="member"),
        command("provision_user", "off@x.example", db.t(3), role="member"),
        command("provision_user", "gone@x.example", db.t(3), role="member"),
    )

    assert (older.status, older.role, older.is_active) == ("created", "admin", True)
    assert (newer.status, newer.role, newer.is_active) == ("created", "member", True)
    assert (off.status, off.role, off.is_active) == ("created", "member", False)
    assert (gone.status, gone.user_id) == ("superseded", None)
    assert await db.rows("SELECT email, role, is_active FROM users ORDER BY email") == [
        ("early@x.example", "admin", True),
        ("late@x.example", "member", True),
        ("off@x.example", "member", False),
    ]
    assert (
        await db.rows("SELECT key FROM user_states WHERE role IS NOT NULL OR pending_since IS NOT NULL") == []
    )
    assert (
        await db.one(command("provision_user", "gone@x.example", db.t(6), role="viewer"))
    ).status == "created"


# Hole 3: a batch whose distinct keys collide under some other case mapping.


async def test_a_batch_of_keys_that_collide_only_under_other_case_mappings_applies_in_one_call(
    db: Db,
) -> None:
    emails = [
        "Ivan@x.example",  # PostgreSQL's lower() gives ivan, as for the next one
        "İvan@x.example",
        "ıvan@x.example",  # noqa: RUF001 - dotless i: upper() gives IVAN
        "maße@x.example",  # casefold() gives masse, as for the next one
        "MASSE@x.example",
        "ΟΔΥΣΣΕΥΣ@x.example",  # final sigma: οδυσσευς, and οδυσσευσ by a simple mapping
        "οδυσσευσ@x.example",
    ]
    keys = [identity_key(email) for email in emails]
    assert len(set(keys)) == len(emails)
    assert len({email.casefold() for email in emails}) < len(emails)
    valid, rejected = await parse_bulk_entries(
        [{"email": email, "role": "member"} for email in emails]
        + [{"email": "i\u0307van@x.example", "role": "viewer"}]  # İvan's key, spelt decomposed
    )
    assert rejected == [{"index": 7, "error": "email: duplicate of entry 1"}]
    entries = users.bulk_commands(valid, Stamp(db.t(1), "bulk-job"), KEYS)

    uow = SqlAlchemyUnitOfWork(db.sessions)
    outcome = await users.provision_users(uow, entries, rejected, retention=RETENTION)

    assert (outcome.created, outcome.updated, outcome.unchanged, outcome.superseded) == (7, 0, 0, 0)
    assert outcome.rejected == [{"index": 7, "error": "email: duplicate of entry 1"}]
    assert await db.rows("SELECT key, email FROM users ORDER BY key") == sorted(
        zip(keys, emails, strict=True)
    )

    again = users.bulk_commands(valid, Stamp(db.t(2), "bulk-job-2"), KEYS)
    uow = SqlAlchemyUnitOfWork(db.sessions)
    second = await users.provision_users(uow, again, [], retention=RETENTION)
    assert (second.created, second.updated, second.unchanged, second.superseded) == (0, 0, 7, 0)


# Hole 4: an expired intent is reported, once, and kept.


async def test_an_expired_intent_is_reported_once_and_keeps_its_role_and_stamp(db: Db) -> None:
    t1, t1_5, t2, t3 = db.t(1), db.t(1.5), db.t(2), db.t(3)
    intent = command("set_user_role", "ada@x.example", t2, role="admin", job_id="intent-job")
    assert (await db.one(intent)).status == "pending"
    bob = command("set_user_role", "bob@x.example", t2, role="admin", job_id="bob-intent-job")
    assert (await db.one(bob)).status == "pending"
    reports: list[list[ExpiredIntent]] = []

    async def report(expired: list[ExpiredIntent]) -> None:
        reports.append(expired)

    async def expire() -> list[ExpiredIntent]:
        uow = SqlAlchemyUnitOfWork(db.sessions)
        return await maintenance.expire_intents(uow, report, window=0, batch=10)

    expired = await expire()
    assert sorted(expired) == [
        ExpiredIntent("ada@x.example", "admin", t2, "intent-job"),
        ExpiredIntent("bob@x.example", "admin", t2, "bob-intent-job"),
    ]
    assert await expire() == []
    assert len(reports) == 1
    state = await db.state("ada@x.example")
    assert state is not None
    assert (state["role"], state["role_as_of"], state["role_job_id"], state["intent_reported"]) == (
        "admin",
        t2,
        "intent-job",
        True,
    )

    older = await db.one(command("set_user_role", "ada@x.example", t1, role="viewer"))
    assert (older.status, older.user_id) == ("superseded", None)
    assert (await db.one(intent)).status == "pending"  # the same job delivered again
    assert await expire() == []
    assert len(reports) == 1

    created = await db.one(command("provision_user", "ada@x.example", t1_5, role="member"))
    assert (created.status, created.role, created.is_active) == ("created", "admin", True)
    newer = await db.one(command("provision_user", "bob@x.example", t3, role="member"))
    assert (newer.status, newer.role) == ("created", "member")
    assert await db.rows("SELECT email, role FROM users ORDER BY email") == [
        ("ada@x.example", "admin"),
        ("bob@x.example", "member"),
    ]
    assert (
        await db.rows("SELECT key FROM user_states WHERE role IS NOT NULL OR pending_since IS NOT NULL") == []
    )


# Hole 5: erase forgets the person, and keeps the stamp that protects against older commands.


def digest(secret: str, email: str) -> bytes:
    return hmac.digest(secret.encode(), identity_key(email).encode(), "sha256")


async def erase(db: Db, email: str, erasure: ErasureKeys = KEYS) -> tuple[int, int] | None:
    uow = SqlAlchemyUnitOfWork(db.sessions)
    return await maintenance.erase(uow, email, erasure)


async def traces(db: Db, email: str) -> list[tuple[Any, ...]]:
    """Every row of `users`, `user_states` and `user_changes` that names the person, by key or email."""
    key = identity_key(email)
    return await db.rows(
        """
        SELECT 'users', email FROM users WHERE key = :key OR lower(email) = lower(:email)
        UNION ALL SELECT 'user_states', key FROM user_states WHERE key = :key
        UNION ALL SELECT 'user_changes', email FROM user_changes
            WHERE email_key = :key OR lower(email) = lower(:email) OR lower(was_email) = lower(:email)
        """,
        key=key,
        email=email,
    )


async def test_erase_forgets_the_person_and_an_older_provision_stays_superseded(db: Db) -> None:
    await db.one(command("provision_user", "ada@x.example", db.t(1), role="member", password_hash=HASH_A))
    await db.one(command("delete_user", "ada@x.example", db.t(3), job_id="delete-job"))

    assert await erase(db, "ADA@X.EXAMPLE") == (1, 2)

    assert await traces(db, "ada@x.example") == []
    assert await db.rows("SELECT digest, as_of, job_id FROM erased_stamps") == [
        (digest(TEST_ERASURE_KEY, "ada@x.example"), db.t(3), "delete-job")
    ]
    assert await db.scalar("SELECT octet_length(digest) FROM erased_stamps") == 32

    late = await db.one(command("provision_user", "ada@x.example", db.t(2), role="admin"))
    assert (late.status, late.user_id) == ("superseded", None)
    assert await db.user("ada@x.example") is None
    newer = await db.one(command("provision_user", "ada@x.example", db.t(4), role="viewer"))
    assert (newer.status, newer.role) == ("created", "viewer")
    assert await db.rows("SELECT email, role, hashed_password FROM users") == [
        ("ada@x.example", "viewer", None)
    ]


async def test_erase_normalises_its_argument_to_the_identity_key(db: Db) -> None:
    await db.one(command("provision_user", "ada@xn--bcher-kva.example", db.t(1), role="member"))
    await db.one(command("delete_user", "Ada@bücher.example", db.t(3)))

    assert await erase(db, "ADA@BÜCHER.EXAMPLE") == (1, 2)

    assert await traces(db, "ada@bücher.example") == []
    assert await db.rows("SELECT digest FROM erased_stamps") == [
        (digest(TEST_ERASURE_KEY, "ada@bücher.example"),)
    ]


async def test_erase_of_an_existing_user_returns_none_and_changes_nothing(db: Db) -> None:
    created = await db.one(command("provision_user", "ada@x.example", db.t(1), role="member"))
    before = await traces(db, "ada@x.example")

    assert await erase(db, "Ada@x.example") is None

    assert await traces(db, "ada@x.example") == before
    assert await db.user("ada@x.example") == (created.user_id, "ada@x.example", "member", True, None)
    assert await db.scalar("SELECT count(*) FROM erased_stamps") == 0


async def test_erase_without_erasure_keys_raises_and_changes_nothing(db: Db) -> None:
    await db.one(command("delete_user", "ada@x.example", db.t(3)))

    with pytest.raises(ErasureNotConfigured):
        await erase(db, "ada@x.example", NO_ERASURE_KEYS)

    assert sorted(table for table, _ in await traces(db, "ada@x.example")) == ["user_changes", "user_states"]
    assert await db.scalar("SELECT count(*) FROM erased_stamps") == 0


async def test_a_stamp_erased_under_the_previous_key_is_found_after_rotation(db: Db) -> None:
    old, new = "old-erasure-key-" + "a" * 32, "new-erasure-key-" + "b" * 32
    before, after = ErasureKeys([old]), ErasureKeys([new, old])
    await db.one(command("provision_user", "ada@x.example", db.t(1), role="member", erasure=before))
    await db.one(command("delete_user", "ada@x.example", db.t(3), job_id="delete-job", erasure=before))
    assert await erase(db, "ada@x.example", before) == (1, 2)

    (forgotten,) = await db.dry_run(
        command("provision_user", "ada@x.example", db.t(2), role="admin", erasure=ErasureKeys([new]))
    )
    assert forgotten.status == "created"  # without the previous key the stamp cannot be found

    rotated = await db.one(command("provision_user", "ada@x.example", db.t(2), role="admin", erasure=after))
    assert (rotated.status, rotated.user_id) == ("superseded", None)
    assert await db.user("ada@x.example") is None

    assert await erase(db, "ada@x.example", after) == (1, 1)  # the stamp moves under the current key
    assert await db.rows("SELECT digest, as_of, job_id FROM erased_stamps") == [
        (digest(new, "ada@x.example"), db.t(3), "delete-job")
    ]
    (current,) = await db.dry_run(
        command("provision_user", "ada@x.example", db.t(2), role="admin", erasure=ErasureKeys([new]))
    )
    assert current.status == "superseded"


# Hole 6: one clock, the database's, for the window.


@pytest.mark.parametrize(
    "skew", [0, -3600, 3600], ids=["one-clock", "worker-an-hour-behind", "worker-an-hour-ahead"]
)
async def test_a_command_just_outside_the_window_is_refused_and_writes_nothing(
    db: Db, monkeypatch: pytest.MonkeyPatch, skew: int
) -> None:
    now = await db.scalar("SELECT floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint")
    wall_clock = time.time_ns
    # The worker's clock is off by `skew` seconds: the database's clock alone decides.
    monkeypatch.setattr(time, "time_ns", lambda: wall_clock() + skew * 1_000_000_000)
    outside = await db.one(
        command("provision_user", "old@x.example", now - 61 * MICROS, role="admin"), retention=60
    )
    inside = await db.one(
        command("provision_user", "new@x.example", now - 59 * MICROS, role="admin"), retention=60
    )

    assert (outside.status, outside.user_id) == ("refused", None)
    assert (inside.status, inside.role) == ("created", "admin")
    assert await db.rows("SELECT email FROM users") == [("new@x.example",)]
    assert await db.rows(
        "SELECT key FROM user_states "
        "WHERE greatest(provisioned_as_of, role_as_of, active_as_of, password_as_of) > 0 OR role IS NOT NULL"
    ) == [("new@x.example",)]
    assert await db.rows("SELECT email_key, status FROM user_changes") == [("new@x.example", "created")]


async def test_a_batch_entry_just_outside_the_window_is_rejected_and_writes_nothing(db: Db) -> None:
    now = now_micros()
    valid, rejected = await parse_bulk_entries(
        [
            {"email": "new@x.example", "role": "member", "as_of": now - 59 * MICROS},
            {"email": "old@x.example", "role": "member", "as_of": now - 61 * MICROS},
        ]
    )
    entries = users.bulk_commands(valid, Stamp(now, "bulk-job"), KEYS)

    uow = SqlAlchemyUnitOfWork(db.sessions)
    outcome = await users.provision_users(uow, entries, rejected, retention=60)

    assert (outcome.created, outcome.updated, outcome.unchanged, outcome.superseded) == (1, 0, 0, 0)
    assert outcome.rejected == [{"index": 1, "error": users.REFUSED_ENTRY}]
    assert await db.rows("SELECT email FROM users") == [("new@x.example",)]
    assert await db.rows("SELECT email_key FROM user_changes") == [("new@x.example",)]


async def test_purge_removes_a_tombstone_older_than_retention_and_keeps_a_newer_one(db: Db) -> None:
    now = now_micros()
    await db.apply(
        command("delete_user", "old@x.example", now - 120 * MICROS),
        command("delete_user", "new@x.example", now - 10 * MICROS),
        command("set_user_role", "intent@x.example", now - 120 * MICROS, role="admin"),
    )

    purged = await maintenance.purge_tombstones(
        SqlAlchemyUnitOfWork(db.sessions),
        retention=60,
        deadline=time.monotonic() + 60,
        clock=time.monotonic,
    )

    assert purged == 1
    # An intent not yet reported stays, whatever its age: its report is still due.
    assert await db.rows("SELECT key FROM user_states ORDER BY key") == [
        ("intent@x.example",),
        ("new@x.example",),
    ]


# Statuses describe the state when a command is applied; ids are stable while the user exists.


async def test_an_older_delete_arriving_last_that_resets_the_hash_is_updated(db: Db) -> None:
    created = await db.one(
        command("provision_user", "ada@x.example", db.t(1), role="member", password_hash=HASH_A)
    )
    kept = await db.one(command("provision_user", "ada@x.example", db.t(3), role="admin", job_id="p3"))
    late_delete = await db.one(command("delete_user", "ada@x.example", db.t(2), job_id="d2"))

    assert (created.status, kept.status) == ("created", "updated")
    assert late_delete == UserOutcome("updated", "ada@x.example", created.user_id, "admin", True)
    assert await db.user("ada@x.example") == (created.user_id, "ada@x.example", "admin", True, None)
    assert await db.rows(
        "SELECT status, was_provisioned, provisioned, password_changed FROM user_changes WHERE job_id = 'd2'"
    ) == [("updated", True, True, True)]


async def test_a_users_id_never_changes_while_it_exists_and_a_recreated_user_is_a_new_row(db: Db) -> None:
    commands: Sequence[UserCommand] = [
        command("provision_user", "ada@x.example", db.t(1), role="member"),
        command("set_user_role", "ADA@x.example", db.t(2), role="admin"),
        command("deactivate_user", "Ada@x.example", db.t(3)),
        command("provision_user", "ada@X.example", db.t(4), role="viewer", password_hash=HASH_A),
        command("set_user_role", "ada@x.example", db.t(1.5), role="viewer"),  # older: superseded
    ]
    outcomes = [await db.one(cmd) for cmd in commands]
    assert [o.status for o in outcomes] == ["created", "updated", "updated", "updated", "superseded"]
    first_id = outcomes[0].user_id
    assert first_id is not None
    assert {o.user_id for o in outcomes[:4]} == {first_id}
    assert await db.rows("SELECT id FROM users") == [(first_id,)]

    deleted = await db.one(command("delete_user", "ada@x.example", db.t(5)))
    recreated = await db.one(command("provision_user", "ada@x.example", db.t(6), role="member"))
    assert (deleted.status, deleted.user_id) == ("deleted", first_id)
    assert recreated.status == "created"
    assert recreated.user_id is not None
    assert recreated.user_id != first_id
    assert await db.rows("SELECT id FROM users") == [(recreated.user_id,)]
