"""The repositories' SQL, kept in `sql/*.sql` beside this module and read on first use, never at import.

A file is one statement or one fragment of one. `{name}` in a file is filled with the fragment
`sql/name.sql`, or with the value the caller passes for `name` (`{materialized}`); anything else in
braces (`'{}'`, an empty array) is SQL and stays. A file's final newline is not part of its text.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from sqlalchemy import TextClause, text

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@cache
def sql(name: str, **fill: str) -> str:
    """The text of `sql/<name>.sql`, its placeholders filled (fragments by name, the rest from `fill`)."""
    source = resources.files(__package__).joinpath("sql", f"{name}.sql").read_text(encoding="utf-8")
    source = source.removesuffix("\n")
    return _PLACEHOLDER.sub(lambda m: fill[m[1]] if m[1] in fill else sql(m[1], **fill), source)


@cache
def statement(name: str, **fill: str) -> TextClause:
    """`sql(name, **fill)` as a statement; one object per statement, built on first use."""
    return text(sql(name, **fill))
