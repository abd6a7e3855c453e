"""SCIM filters (RFC 7644 §3.4.2.2) as SQLAlchemy conditions on `users`, every value a bound parameter.

scim2-models parses the filter; this module only walks its tree. Supported: `eq`, `ne`, `co`, `sw`,
`ew` and `pr`, combined with `and`, `or` and `not`, on `userName`, `emails` / `emails.value` /
`emails[value …]`, `externalId`, `active` and `id`. Anything else is refused with `invalidFilter`.

- `userName` and `emails.value` are matched without regard to case: `eq` and `ne` compare identity
  keys (`worker.jobs.identity`), the key users.key holds; `co`, `sw` and `ew` compare lower-cased
  text with LIKE, its wildcards escaped.
- `externalId` is case-exact (RFC 7643 §3.1).
- Nothing filters out inactive users: a filter selects among every provisioned user.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import PydanticCustomError
from scim2_models import InvalidFilterException, ScimFilter
from scim2_models.path import (
    AttrPath,
    CompareOperator,
    Comparison,
    FilterNode,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ValuePath,
)
from sqlalchemy import ColumnElement, and_, false, func, not_, or_, true

from worker.db.models import User
from worker.jobs.emails import email_key
from worker.scim.errors import ScimError, bad_request

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"

_STRING_OPERATORS = {
    CompareOperator.eq,
    CompareOperator.ne,
    CompareOperator.co,
    CompareOperator.sw,
    CompareOperator.ew,
}
_BOOLEAN_OPERATORS = {CompareOperator.eq, CompareOperator.ne}


def parse_filter(text: str) -> FilterNode:
    """The tree of a filter string; 400 invalidFilter if it is not one."""
    try:
        return ScimFilter(text).ast
    except InvalidFilterException as error:
        raise bad_request("invalidFilter", f"the filter is not valid: {error.detail}") from None
    except ValueError as error:
        raise bad_request("invalidFilter", f"the filter is not valid: {error}") from None


def where_clause(text: str) -> ColumnElement[bool]:
    """The condition on `users` a filter string stands for."""
    return _translate(parse_filter(text))


def _refused(detail: str) -> ScimError:
    return bad_request("invalidFilter", detail)


def _translate(node: FilterNode, *, within: str | None = None) -> ColumnElement[bool]:
    if isinstance(node, LogicalExpr):
        terms = [_translate(term, within=within) for term in node.terms]
        return and_(*terms) if node.op == LogicalOperator.and_ else or_(*terms)
    if isinstance(node, Not):
        return not_(_translate(node.expr, within=within))
    if isinstance(node, ValuePath):
        if within is not None:
            raise _refused("a value filter cannot be nested in another")
        attribute = _attribute(node.attr_path)
        if attribute != "emails" or node.sub_attr is not None:
            raise _refused(f"value filters are supported on emails only, not on {node.attr_path}")
        return _translate(node.val_filter, within="emails")
    if isinstance(node, Present):
        return _present(_qualified(node.attr_path, within))
    if isinstance(node, Comparison):
        return _compare(_qualified(node.attr_path, within), node.op, node.value)
    raise _refused(f"unsupported filter expression: {node}")  # pragma: no cover - the grammar has no other


def _attribute(path: AttrPath) -> str:
    """`path`'s attribute in lower case, its core-schema URN dropped (another schema is refused)."""
    if path.uri is not None and path.uri.lower() != USER_SCHEMA.lower():
        raise _refused(f"filtering on {path} is not supported")
    return path.attr.lower()


def _qualified(path: AttrPath, within: str | None) -> str:
    """The dotted lower-case name a path compares: `emails.value`, `username`…"""
    attribute = _attribute(path)
    if within is not None:
        if path.sub_attr is not None:
            raise _refused(f"unsupported attribute {path} in a value filter")
        return f"{within}.{attribute}"
    return f"{attribute}.{path.sub_attr.lower()}" if path.sub_attr else attribute


def _present(name: str) -> ColumnElement[bool]:
    if name in {
        "username",
        "emails",
        "emails.value",
        "emails.type",
        "emails.primary",
        "active",
        "id",
        "roles",
    }:
        return true()  # every user has them
    if name == "externalid":
        return User.external_id.is_not(None)
    raise _refused(
        f"filtering on {name!r} is not supported: use userName, emails.value, externalId or active"
    )


def _compare(name: str, op: CompareOperator, value: Any) -> ColumnElement[bool]:
    if name in {"username", "emails", "emails.value"}:
        return _email_condition(op, _string(name, op, value))
    if name == "externalid":
        return _text_condition(User.external_id, op, _string(name, op, value))
    if name == "active":
        if op not in _BOOLEAN_OPERATORS:
            raise _refused(f"active takes eq or ne, not {op.value}")
        wanted = _boolean(value)
        return User.is_active == wanted if op == CompareOperator.eq else User.is_active != wanted
    if name == "id":
        if op not in _BOOLEAN_OPERATORS:
            raise _refused(f"id takes eq or ne, not {op.value}")
        text = _string(name, op, value)
        if not text.isdigit() or len(text) > 18:
            return false() if op == CompareOperator.eq else true()
        return User.id == int(text) if op == CompareOperator.eq else User.id != int(text)
    if name == "emails.type":
        matches = op == CompareOperator.eq and isinstance(value, str) and value.lower() == "work"
        if op not in _BOOLEAN_OPERATORS:
            raise _refused(f"emails.type takes eq or ne, not {op.value}")
        return true() if matches == (op == CompareOperator.eq) else false()
    if name == "emails.primary":
        if op not in _BOOLEAN_OPERATORS:
            raise _refused(f"emails.primary takes eq or ne, not {op.value}")
        return true() if _boolean(value) == (op == CompareOperator.eq) else false()
    raise _refused(
        f"filtering on {name!r} is not supported: use userName, emails.value, externalId or active"
    )


def _string(name: str, op: CompareOperator, value: Any) -> str:
    if op not in _STRING_OPERATORS:
        raise _refused(f"operator {op.value} is not supported on {name}: use eq, ne, co, sw, ew or pr")
    if not isinstance(value, str):
        raise _refused(f"{name} compares with a string, not {type(value).__name__}")
    return value


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    raise _refused("active compares with true or false")


def _email_condition(op: CompareOperator, value: str) -> ColumnElement[bool]:
    if op in _BOOLEAN_OPERATORS:
        try:
            key = email_key(value)
        except PydanticCustomError:
            matched: ColumnElement[bool] = false()  # not an email: no user has it
        else:
            matched = User.key == key
        return matched if op == CompareOperator.eq else not_(matched)
    return _like(func.lower(User.email), op, value.lower())


def _text_condition(column: Any, op: CompareOperator, value: str) -> ColumnElement[bool]:
    if op == CompareOperator.eq:
        condition: ColumnElement[bool] = column == value
        return condition
    if op == CompareOperator.ne:
        return or_(column.is_(None), column != value)
    return _like(column, op, value)


def _like(column: Any, op: CompareOperator, value: str) -> ColumnElement[bool]:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = {
        CompareOperator.co: f"%{escaped}%",
        CompareOperator.sw: f"{escaped}%",
        CompareOperator.ew: f"%{escaped}",
    }[op]
    condition: ColumnElement[bool] = column.like(pattern, escape="\\")
    return condition
