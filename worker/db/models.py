"""ORM models: the declarative `Base` and `User`."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Enum, Identity, Index, MetaData, String, Text, func, text
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


class Base(DeclarativeBase):
    """Declarative base carrying the constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Role(enum.StrEnum):
    """What a user may do; stored as text and checked by the database."""

    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


def _as_of() -> Mapped[int]:
    """The `as_of` (µs since the epoch) of the command that last wrote a field; 0 for none."""
    return mapped_column(BigInteger, server_default=text("0"))


def _job_id() -> Mapped[str]:
    """The job id of the command that last wrote a field, compared in byte order to break ties."""
    return mapped_column(Text(collation="C"), server_default=text("''"))


class User(Base):
    """One row per email (any letter case): a provisioned account, or the stamps of one that is not.

    Every field carries the stamp of the newest command that wrote it, so that commands converge on
    the newest one's state whatever order they run in. A row with `provisioned` false is no user:
    it is a tombstone (a delete's stamps) or holds commands that arrived before their user
    (a `set_user_role` intent, a deactivation). Repositories hide such rows from user lookups.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    hashed_password: Mapped[str | None] = mapped_column(String(512))
    role: Mapped[Role | None] = mapped_column(
        Enum(
            Role,
            name="role",
            native_enum=False,
            create_constraint=True,
            length=16,
            validate_strings=True,
            values_callable=lambda roles: [r.value for r in roles],
        )
    )
    is_active: Mapped[bool] = mapped_column(server_default=text("true"))
    provisioned: Mapped[bool] = mapped_column(server_default=text("true"))
    # Each field's stamp (as_of, job id): provisioned, role, is_active and hashed_password.
    provisioned_as_of: Mapped[int] = _as_of()
    provisioned_job_id: Mapped[str] = _job_id()
    role_as_of: Mapped[int] = _as_of()
    role_job_id: Mapped[str] = _job_id()
    active_as_of: Mapped[int] = _as_of()
    active_job_id: Mapped[str] = _job_id()
    password_as_of: Mapped[int] = _as_of()
    password_job_id: Mapped[str] = _job_id()
    # When a set_user_role intent was stored for a user not provisioned yet (it expires after
    # INTENT_WINDOW); None otherwise.
    pending_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    __table_args__ = (
        # Case-insensitive uniqueness, enforced by PostgreSQL; also the ON CONFLICT target.
        Index("uq_users_email_lower", func.lower(email), unique=True),
        # Pending set_user_role intents, for their expiry; NULL on every other row, so small.
        Index("ix_users_pending_since", pending_since, postgresql_where=pending_since.isnot(None)),
    )

    def __repr__(self) -> str:
        return (
            f"User(id={self.id!r}, email={self.email!r}, role={self.role!r}, is_active={self.is_active!r}, "
            f"provisioned={self.provisioned!r})"
        )


class UserChange(Base):
    """The audit trail: one row per command outcome and email (a re-run of a job adds none).

    Each field is recorded as it was before the command and as it is after; a field changed where
    the two differ (`changes`). Plain columns rather than a JSON document: bulk batches write a
    thousand rows at a time, and building documents cost more than writing the rows. Keyed by
    (lower-cased email, job id): the key de-duplicates re-runs and serves lookups by email.
    """

    __tablename__ = "user_changes"

    email_key: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH), primary_key=True)
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
