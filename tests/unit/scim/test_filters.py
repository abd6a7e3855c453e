"""Filter strings to SQL: the right conditions, every value a bound parameter, the rest refused."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import postgresql

from worker.db.models import User
from worker.scim.errors import ScimError
from worker.scim.filters import where_clause

DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


def sql(expression: str) -> tuple[str, dict[str, object]]:
    """The WHERE clause (casts left out) and its parameters."""
    compiled = select(User.id).where(where_clause(expression)).compile(dialect=DIALECT)
    where = str(compiled).split("WHERE", 1)[1].strip()
    return where.replace("::VARCHAR", "").replace("::BIGINT", "").replace(' COLLATE "C"', ""), dict(
        compiled.params
    )


def test_user_name_eq_compares_identity_keys() -> None:
    text, params = sql('userName eq "Ann.Lee@Example.COM"')
    assert text == "users.key = %(key_1)s"
    assert params == {"key_1": "ann.lee@example.com"}


def test_user_name_that_is_no_email_matches_nothing() -> None:
    text, _ = sql('userName eq "not an email"')
    assert text == "false"


@pytest.mark.parametrize(
    ("expression", "pattern"),
    [
        ('userName co "LEE"', "%lee%"),
        ('emails.value sw "Ann"', "ann%"),
        ('emails[value ew "@EXAMPLE.com"]', "%@example.com"),
        ('userName co "50%_off\\\\"', "%50\\%\\_off\\\\%"),
    ],
)
def test_substring_operators_use_lower_and_escaped_like(expression: str, pattern: str) -> None:
    text, params = sql(expression)
    assert text == "lower(users.email) LIKE %(lower_1)s ESCAPE '\\'"
    assert params == {"lower_1": pattern}


def test_external_id_is_case_exact() -> None:
    text, params = sql('externalId eq "AbC"')
    assert text == "users.external_id = %(external_id_1)s"
    assert params == {"external_id_1": "AbC"}
    text, params = sql('externalId sw "Ab"')
    assert params == {"external_id_1": "Ab%"}


def test_active_and_presence_and_logic() -> None:
    text, params = sql('active eq false and (externalId pr or not (userName eq "a@example.com"))')
    assert text == "users.is_active = false AND (users.external_id IS NOT NULL OR users.key != %(key_1)s)"
    assert params == {"key_1": "a@example.com"}
    assert sql("userName pr")[0] == "true"
    assert sql('active eq "True"')[0] == "users.is_active = true"


def test_id_and_urn_qualified_attributes() -> None:
    assert sql('id eq "42"') == ("users.id = %(id_1)s", {"id_1": 42})
    assert sql('id eq "abc"')[0] == "false"
    _text, params = sql('urn:ietf:params:scim:schemas:core:2.0:User:userName eq "a@example.com"')
    assert params == {"key_1": "a@example.com"}


def test_a_value_is_never_spliced_into_the_sql() -> None:
    hostile = "x' OR 1=1 --"
    for expression in (f'externalId eq "{hostile}"', f'userName co "{hostile}"'):
        text, params = sql(expression)
        assert "1=1" not in text
        assert any("1=1" in str(value) for value in params.values())


@pytest.mark.parametrize(
    "expression",
    [
        'userName xx "a"',
        'userName gt "a"',
        'externalId le "a"',
        'title eq "x"',
        'name.givenName eq "x"',
        'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "x"',
        "active co true",
        "active eq 3",
        'roles[value eq "admin"]',
        "userName eq",
        "",
        "userName eq 5",
    ],
)
def test_unsupported_filters_are_invalid_filter(expression: str) -> None:
    with pytest.raises(ScimError) as raised:
        where_clause(expression)
    assert raised.value.status == 400
    assert raised.value.scim_type == "invalidFilter"
