"""Error texts fit to keep: a driver's quoted argument value is withheld."""

from __future__ import annotations

from worker.jobs.errors import DatabaseError, first_line


def test_first_line_withholds_a_query_argument_the_driver_quotes() -> None:
    error = ValueError(
        "invalid input for query argument $3: '$argon2id$v=19$secret' (expected int)\n[SQL: …]"
    )
    assert first_line(error) == "invalid input for query argument $3: (value withheld)"


def test_a_database_error_names_the_drivers_error_and_its_first_line_only() -> None:
    driver = LookupError('relation "users" has no column "x"\nDETAIL: Failing row contains (secret)')
    dbapi = RuntimeError("adapted")
    dbapi.__cause__ = driver
    wrapped = Exception("(sqlalchemy …) adapted\n[SQL: SELECT x FROM users]")
    wrapped.__cause__ = dbapi
    assert str(DatabaseError(wrapped)) == 'LookupError: relation "users" has no column "x"'
