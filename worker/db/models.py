"""ORM models: the declarative `Base`, `User`, the per-person `UserState`, and the audit trail."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Enum,
    ForeignKey,
    Identity,
    Index,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so autogenerate and downgrades never chase generated names.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

EMAIL_MAX_LENGTH = 320
EXTERNAL_ID_MAX_LENGTH = 255


class Base(DeclarativeBase):
    """Declarative base carrying the constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Role(enum.StrEnum):
    """What a user may do; stored as text and checked by the database."""

    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


def _role(*, nullable: bool) -> Mapped[Any]:
    return mapped_column(
        Enum(
            Role,
            name="role",
            native_enum=False,
            create_constraint=True,
            length=16,
            validate_strings=True,
            values_callable=lambda roles: [r.value for r in roles],
        ),
        nullable=nullable,
    )


def _as_of() -> Mapped[int]:
    """The `as_of` (µs since the epoch) of the command that last wrote a field; 0 for none."""
    return mapped_column(BigInteger, server_default=text("0"))


def _job_id() -> Mapped[str]:
    """The job id of the command that last wrote a field, compared in byte order to break ties."""
    return mapped_column(Text(collation="C"), server_default=text("''"))


class UserState(Base):
    """One row per identity key: the stamps that order a person's commands, and its lock.

    Every field of a user (provisioned, role, is_active, hashed_password, external_id) carries the stamp
    (as_of, job id) of the newest command that wrote it, so that commands converge on the newest
    one's state whatever order they run in. The row outlives the user: after a delete it is the
    tombstone, and before a provision it holds the commands that came early (a role intent, a
    deactivation). Every command locks this row first, in key order, so it also serialises each
    person's commands. Purged once every stamp is older than TOMBSTONE_RETENTION.
    """

    __tablename__ = "user_states"

    key: Mapped[str] = mapped_column(Text(collation="C"), primary_key=True)
    key_version: Mapped[int] = mapped_column(SmallInteger)
    # A random token of the unit of work that inserted the row: its merge knows the row is new.
    inserted_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # The fields while the person has no `users` row (a set_user_role intent, or the values of an
    # update newer than the delete that removed the row); NULL while the person has one.
    role: Mapped[Role | None] = _role(nullable=True)
    is_active: Mapped[bool | None]
    hashed_password: Mapped[str | None] = mapped_column(String(512))
    external_id: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_MAX_LENGTH))
    provisioned_as_of: Mapped[int] = _as_of()
    provisioned_job_id: Mapped[str] = _job_id()
    role_as_of: Mapped[int] = _as_of()
    role_job_id: Mapped[str] = _job_id()
    active_as_of: Mapped[int] = _as_of()
    active_job_id: Mapped[str] = _job_id()
    password_as_of: Mapped[int] = _as_of()
    password_job_id: Mapped[str] = _job_id()
    external_id_as_of: Mapped[int] = _as_of()
    external_id_job_id: Mapped[str] = _job_id()
    # When a set_user_role intent was stored for a person not provisioned yet; None otherwise.
    pending_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The intent outlived INTENT_WINDOW and was reported once as a failed job (UserNotFound).
    intent_reported: Mapped[bool] = mapped_column(server_default=text("false"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        # Intents waiting for their report, for the expiry job; NULL on every other row, so small.
        Index(
            "ix_user_states_pending_since",
            pending_since,
            postgresql_where=text("pending_since IS NOT NULL AND NOT intent_reported"),
        ),
    )


class User(Base):
    """A provisioned user: a row exists exactly while the person is provisioned.

    `key` is the person's identity key (README, "Identity"): one person, one key, one row. Every
    reader (a login or SSO service, a report) can take the table as it is: nothing here is a
    tombstone or an intent.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    # The identity key (byte order, never the collation's): unique, and the row's lock in user_states.
    key: Mapped[str] = mapped_column(Text(collation="C"), ForeignKey(UserState.key), unique=True)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    hashed_password: Mapped[str | None] = mapped_column(String(512))
    role: Mapped[Role] = _role(nullable=False)
    is_active: Mapped[bool] = mapped_column(server_default=text("true"))
    # The person's id in the system of record that provisions it (SCIM's externalId); case-exact.
    external_id: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_MAX_LENGTH), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, email={self.email!r}, role={self.role!r}, is_active={self.is_active!r})"


class ErasedStamp(Base):
    """What `erase` leaves of a person: its newest stamp, under a keyed digest of its identity key.

    No email and no key is kept: the digest (HMAC-SHA256 with ERASURE_KEYS) lets a later command
    for the same person find it, and nobody holding the table alone can tell who it was. A
    command older than the stamp is superseded as by a delete; purged with the tombstones.
    """

    __tablename__ = "erased_stamps"

    digest: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    as_of: Mapped[int] = mapped_column(BigInteger)
    job_id: Mapped[str] = mapped_column(Text(collation="C"))
    erased_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class UserChange(Base):
    """The audit trail: one row per command outcome and person (a re-run of a job adds none).

    Each field is recorded as it was before the command and as it is after; a field changed where
    the two differ (`changes`). Plain columns rather than a JSON document: bulk batches write a
    thousand rows at a time, and building documents cost more than writing the rows. Keyed by
    (identity key, job id): the key de-duplicates re-runs and serves lookups by email.
    """

    __tablename__ = "user_changes"

    email_key: Mapped[str] = mapped_column(Text(collation="C"), primary_key=True)
    job_id: Mapped[str] = mapped_column(Text, primary_key=True)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    function: Mapped[str] = mapped_column(String(32))
    as_of: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    was_email: Mapped[str | None] = mapped_column(String(EMAIL_MAX_LENGTH))
    was_provisioned: Mapped[bool | None]
    provisioned: Mapped[bool | None]
    was_role: Mapped[str | None] = mapped_column(String(16))
    role: Mapped[str | None] = mapped_column(String(16))
    was_active: Mapped[bool | None]
    is_active: Mapped[bool | None]
    # Never a hash: only whether the command changed it.
    password_changed: Mapped[bool] = mapped_column(server_default=text("false"))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        # Purged by age in insertion order: a BRIN index costs next to nothing to maintain.
        Index("ix_user_changes_recorded_at", recorded_at, postgresql_using="brin"),
    )

    @property
    def changes(self) -> dict[str, Any]:
        """The fields the command changed, as {"field": [old, new]}; a password as "changed"."""
        changed: dict[str, Any] = {}
        pairs = {
            "provisioned": (self.was_provisioned, self.provisioned),
            "email": (self.was_email, self.email if self.was_email is not None else None),
            "role": (self.was_role, self.role),
            "is_active": (self.was_active, self.is_active),
        }
        for field, (old, new) in pairs.items():
            if old != new:
                changed[field] = [old, new]
        if self.password_changed:
            changed["password"] = "changed"  # noqa: S105 - a marker, never a password
        return changed
