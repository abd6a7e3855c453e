"""Errors a job can end with; permanent ones are never retried."""

from __future__ import annotations


class PermanentJobError(Exception):
    """The job cannot succeed as sent: fail it once, do not retry, write nothing."""


class InvalidPayload(PermanentJobError):
    """The job's arguments do not match the contract in docs/jobs.md."""


class UserNotFound(PermanentJobError):
    """The job needs a user that does not exist (a `set_user_role` intent no provision claimed)."""


class StampRefused(PermanentJobError):
    """The job's `as_of` is too far in the future, or older than TOMBSTONE_RETENTION."""

    def __init__(self, message: str, *, as_of: int) -> None:
        super().__init__(message)
        self.as_of = as_of


class GaveUp(Exception):
    """A transient failure outlasted every try the job had (`MAX_TRIES`)."""


def first_line(error: BaseException) -> str:
    """The first line of an error's text (SQLAlchemy appends SQL and links below it)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else "no detail"
