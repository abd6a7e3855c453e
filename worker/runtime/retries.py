"""Which failures of a job are worth another try (the wait before it: `worker.retrying`)."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

from worker.jobs.errors import PermanentJobError, TransientError

# PostgreSQL SQLSTATEs that mean "try again": the same statement can succeed on a later attempt.
TRANSIENT_SQLSTATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available
        "53300",  # too_many_connections
        "57P01",  # admin_shutdown (server restarting, or pg_terminate_backend)
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (starting up)
        # A transaction pooler (PgBouncer) handed the statement to another server connection:
        "42P05",  # duplicate_prepared_statement
        "26000",  # invalid_sql_statement_name (prepared statement does not exist)
    }
)


def is_transient(error: BaseException) -> bool:
    """True if running the job again later may succeed: lost connections, restarts, races, timeouts."""
    if isinstance(error, PermanentJobError):
        return False
    if isinstance(error, TransientError | TimeoutError | OSError | sa_exc.TimeoutError):
        return True  # OSError covers refused and reset connections; sa TimeoutError is the pool's
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated or isinstance(error, sa_exc.OperationalError):
            return True
        orig = error.orig
        sqlstate = _sqlstate(error)
        if sqlstate in TRANSIENT_SQLSTATES or sqlstate.startswith("08"):  # 08xxx: connection exceptions
            return True
        name = type(orig).__name__
        if name == "InvalidCachedStatementError":  # schema changed under a cached prepared statement
            return True
        if name == "InternalServerError" and "cache lookup failed" in str(orig):
            return True
        if isinstance(error, sa_exc.InterfaceError) and "connection" in str(orig).lower():
            return True  # "connection is closed", "connection was closed in the middle of operation"
    return False


def is_deadlock(error: BaseException) -> bool:
    """True if PostgreSQL broke a deadlock by failing this statement (SQLSTATE 40P01)."""
    return _sqlstate(error) == "40P01"


def _sqlstate(error: BaseException) -> str:
    """The SQLSTATE of a database error (as the driver reports it), else ''."""
    if not isinstance(error, sa_exc.DBAPIError):
        return ""
    return str(getattr(error.orig, "sqlstate", None) or "")
