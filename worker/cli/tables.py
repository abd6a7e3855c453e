"""How the command line prints what it found, readable at 80 columns and in a pipe.

On a terminal, or with `--table`, tables have boxes; otherwise the same layout is plain text. A
table whose values do not fit the width becomes one "key: value" block per row. Nothing is cut:
a `whole` value (a status, a function, an id, an error type, a change, a time) is never broken,
and long text wraps between words. Times are shown to the second, in UTC; `--json` has them whole.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

Cell = str | Sequence[str]
"""One value: a line, or lines each kept whole (the changes of an audit row)."""

WRAP_MIN_WIDTH = 20
"""The narrowest a column of wrapping text gets before its table becomes blocks."""

FIELD_LABELS = {"is_active": "active"}
"""An audit row's field names as `history` shows them."""


@dataclass(frozen=True)
class Column:
    """A column of a table, or a key of its blocks."""

    name: str
    wrap: bool = False
    """Long text (a message): wraps between words. Any other value is never broken."""
    numeric: bool = False


class Output:
    """Where a command prints: a console, and whether its tables are drawn with boxes."""

    def __init__(self, console: Console, *, boxed: bool) -> None:
        self.console = console
        self.boxed = boxed
        self._printed = False

    @classmethod
    def stdout(cls, *, table: bool = False) -> Output:
        """Standard output: boxes on a terminal or with `table`, else plain text (no colour either)."""
        terminal = sys.stdout.isatty()
        return cls(
            Console(highlight=False, color_system="auto" if terminal else None), boxed=table or terminal
        )

    def line(self, text: str, *, bold: bool = False) -> None:
        """A line of text, wrapped between words to the width."""
        for part in _wrap(text, self.console.width):
            self.console.print(Text(part, style="bold" if bold else ""), soft_wrap=True)
        self._printed = True

    def table(self, title: str, columns: Sequence[Column], rows: Sequence[Sequence[Cell]]) -> None:
        """`title`, then the rows: a table if they fit the width, else one block per row."""
        if self._printed:
            self.console.print()  # a blank line between tables
        if not rows:
            self.line(f"{title}: none", bold=True)
            return
        self.line(title, bold=True)
        widths = _fit(columns, rows, self.console.width - _frame(len(columns), boxed=self.boxed))
        if widths is None:
            self.console.print()
            self.blocks(columns, rows)
            return
        table = Table(
            box=box.HEAVY_HEAD if self.boxed else None,
            pad_edge=self.boxed,
            show_edge=self.boxed,
            show_lines=any(len(_lines(cell)) > 1 for row in rows for cell in row),
        )
        for column, width in zip(columns, widths, strict=True):
            table.add_column(
                column.name, width=width, overflow="fold", justify="right" if column.numeric else "left"
            )
        for row in rows:
            table.add_row(*(Text("\n".join(_lines(cell))) for cell in row))
        if self.boxed:
            self.console.print(table)
            return
        with self.console.capture() as captured:
            self.console.print(table)
        for text in captured.get().splitlines():
            self.console.out(text.rstrip(), highlight=False)  # a plain table pads its last column

    def blocks(self, columns: Sequence[Column], rows: Sequence[Sequence[Cell]]) -> None:
        """Each row as "key: value" lines, a blank line between rows, the values aligned."""
        self._printed = True
        indent = max(cell_len(column.name) for column in columns) + 2
        for number, row in enumerate(rows):
            if number:
                self.console.print()
            for column, cell in zip(columns, row, strict=True):
                lines = _lines(cell)
                if column.wrap:
                    lines = [part for line in lines for part in _wrap(line, self.console.width - indent)]
                for index, text in enumerate(lines):
                    key = f"{column.name}:" if index == 0 else ""
                    self.console.print(Text.assemble((f"{key:<{indent}}", "bold"), text), soft_wrap=True)


def _lines(cell: Cell) -> list[str]:
    """A cell's lines; an empty value reads "-"."""
    lines = cell.splitlines() if isinstance(cell, str) else list(cell)
    return lines or ["-"]


def _wrap(text: str, width: int) -> list[str]:
    """`text` wrapped between words, its further lines indented (a word longer than `width` stays whole)."""
    width = max(width, WRAP_MIN_WIDTH)
    lines = textwrap.wrap(text, width, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)
    return lines or [text]


def _frame(columns: int, *, boxed: bool) -> int:
    """Columns taken by padding and borders: rich pads each cell by one each side (not at the edges
    of a plain table), and a boxed table draws a line before, between and after its columns."""
    return 3 * columns + 1 if boxed else 2 * columns - 2


def _fit(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], room: int) -> list[int] | None:
    """Column widths that show every value uncut within `room`, or None when none do."""
    natural: list[int] = []
    least: list[int] = []
    for index, column in enumerate(columns):
        values = [line for row in rows for line in _lines(row[index])]
        header_word = max(cell_len(word) for word in column.name.split())
        longest = max([cell_len(column.name), *(cell_len(line) for line in values)])
        if column.wrap:
            word = max((cell_len(word) for line in values for word in line.split()), default=1)
            shortest = min(longest, max(word, header_word, WRAP_MIN_WIDTH))
        else:
            shortest = max([header_word, *(cell_len(line) for line in values)])
        natural.append(longest)
        least.append(shortest)
    if sum(least) > room:
        return None
    widths = list(natural)
    excess = sum(widths) - room
    for index in sorted(range(len(widths)), key=lambda i: widths[i] - least[i], reverse=True):
        if excess <= 0:
            break
        cut = min(excess, widths[index] - least[index])
        widths[index] -= cut
        excess -= cut
    return widths


def short_time(when: float | str | None) -> str:
    """A time to the second in UTC (`2026-11-26T09:30:00Z`), from seconds since the epoch or ISO 8601."""
    if when is None or when == "":
        return ""
    if isinstance(when, str):
        moment = datetime.fromisoformat(when)
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    else:
        moment = datetime.fromtimestamp(float(when), UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def change_lines(changes: Mapping[str, Any]) -> list[str]:
    """An audit row's changes, one a line: `role: member → admin`, `active: yes → no`, `password changed`."""
    lines = []
    for field, change in changes.items():
        label = FIELD_LABELS.get(field, field)
        if isinstance(change, str):
            lines.append(f"{label} {change}")
        else:
            old, new = change
            lines.append(f"{label}: {shown(old)} → {shown(new)}")
    return lines


def shown(value: Any) -> str:
    """A value as a person reads it: yes/no for booleans, "(none)" for none."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
