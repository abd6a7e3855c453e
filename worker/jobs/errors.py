"""Every error a job can end with, and what enqueueing or awaiting a job reports.

Permanent errors (`PermanentJobError`) fail a job once and are never retried; transient ones
(`TransientError`) are worth another try. Which other failures count as transient (lost
connections, restarts, timeouts) is decided in `worker.runtime.retries`. An error's class name
is part of the job contract: it appears in job results and metric labels, so it never changes.
Each error carries its data as attributes; its message is what the job's result shows.
"""

from __future__ import annotations

import re


class PermanentJobError(Exception):
    """The job cannot succeed as sent: fail it once, do not retry, write nothing."""


class InvalidPayload(PermanentJobError):
    """The job's arguments do not match the contract in docs/jobs.md."""

    def __init__(self, message: str, *, function: str | None = None) -> None:
        super().__init__(message)
        self.function = function


class UserNotFound(PermanentJobError):
    """The job needs a user that does not exist (a `set_user_role` intent no provision claimed)."""

    def __init__(self, *, email: str, role: str, window: float) -> None:
        super().__init__(
            f"set_user_role: no user with email {email} was provisioned within INTENT_WINDOW ({window}s), "
            "so the role was not applied: check the email, provision the user, then retry this job "
            "(--as-of now to make it the newest command)"
        )
        self.function = "set_user_role"
        self.email = email
        self.role = role
        self.window = window


class StampRefused(PermanentJobError):
    """The job's `as_of` is too far in the future, or older than TOMBSTONE_RETENTION."""

    def __init__(self, message: str, *, function: str, as_of: int) -> None:
        super().__init__(message)
        self.function = function
        self.as_of = as_of


class SealedPasswordRefused(PermanentJobError):
    """A sealed password that cannot be opened: tampered, under an unknown key, or too old."""


class TransientError(Exception):
    """A failure of ours that is worth retrying (a race that a fresh attempt resolves)."""


class NotProvisionedYet(TransientError):
    """An `update_user` for a person with no user yet: tried again, so that a provision sent at the
    same time (and still queued, or retrying) can land first."""

    def __init__(self, *, function: str) -> None:
        super().__init__(
            f"{function}: the user is not provisioned (yet): send provision_user first; this job is "
            "tried again and applies once the user exists"
        )
        self.function = function


class GaveUp(Exception):
    """A transient failure outlasted every try the job had (`MAX_TRIES`)."""

    def __init__(self, *, function: str, tries: int, last_error: str) -> None:
        super().__init__(f"{function}: gave up after {tries} tries; last error {last_error}")
        self.function = function
        self.tries = tries
        self.last_error = last_error


class DuplicateJob(Exception):
    """A job with this id is queued, running, or has a stored result already."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} already exists: pick another id, or wait for its result")
        self.job_id = job_id


class JobFailed(Exception):
    """A failed job's error as stored in Redis, rebuilt for `Job.result()` to raise."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}" if message else error_type)
        self.error_type = error_type
        self.message = message


class DatabaseError(Exception):
    """PostgreSQL or its driver refused a statement for a reason no retry fixes (a bug, or a schema
    the code does not expect). Told by the driver's error type and first line only: below it come
    the SQL and links, and the driver quotes a mistyped query argument's value (which may be a
    password hash) in its text, so only this stands in the job's result, failure record and logs."""

    def __init__(self, error: BaseException) -> None:
        dbapi = error.__cause__ or error  # SQLAlchemy raises its error from the DB-API's,
        driver = dbapi.__cause__ or dbapi  # and an adapted DB-API (asyncpg's) from the driver's own
        super().__init__(f"{type(driver).__name__}: {first_line(driver)}")


_QUOTED_ARGUMENT = re.compile(r"(query argument \$\d+): .*")


def first_line(error: BaseException) -> str:
    """The first line of an error's text (SQLAlchemy appends SQL and links below it), with any value
    the driver quotes from a query argument withheld."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else "no detail"
    return _QUOTED_ARGUMENT.sub(r"\1: (value withheld)", line)
