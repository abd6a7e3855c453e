"""The command line's tables: boxed or plain, a table or one block per row, nothing cut, short times."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from tests.support.cli import BOX_DRAWING, blocks
from worker.cli.commands import main
from worker.cli.tables import Column, Output, change_lines, short_time

COLUMNS = (Column("job id"), Column("status"), Column("message", wrap=True))
ROW = ["tab-job-0123456789abcdef", "superseded", "newer commands already hold every field this one names"]


def _render(width: int, *, boxed: bool, rows: list[list[str]] | None = None) -> str:
    console = Console(width=width, file=io.StringIO())
    Output(console, boxed=boxed).table("jobs", COLUMNS, [ROW] if rows is None else rows)
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue()


def test_a_table_that_fits_keeps_one_row_per_line_boxed_or_plain() -> None:
    boxed = _render(120, boxed=True)
    assert {"┏", "┃", "│", "└"} <= set(boxed)
    assert any(
        line.startswith("│ tab-job-0123456789abcdef │ superseded │ newer") for line in boxed.splitlines()
    )
    plain = _render(120, boxed=False)
    assert not BOX_DRAWING & set(plain)
    assert plain.splitlines() == [
        "jobs",
        "job id                    status      message",
        f"{ROW[0]}  superseded  {ROW[2]}",
    ]


def test_text_wraps_between_words_while_other_values_keep_their_width() -> None:
    lines = _render(62, boxed=False).splitlines()
    assert lines[2].startswith(f"{ROW[0]}  superseded  newer commands")
    assert all(len(line) <= 62 for line in lines)
    assert " ".join(line[38:].strip() for line in lines[2:]) == ROW[2]


@pytest.mark.parametrize("boxed", [True, False])
def test_a_table_too_wide_for_its_values_becomes_one_block_per_row(boxed: bool) -> None:
    second = ["tab-job-ffffffffffffffff", "created", "-"]
    output = _render(40, boxed=boxed, rows=[ROW, second])
    assert not BOX_DRAWING & set(output)
    assert blocks(output) == [
        {
            "job id": [ROW[0]],
            "status": ["superseded"],
            "message": ["newer commands already hold", "every field this one names"],
        },
        {"job id": [second[0]], "status": ["created"], "message": ["-"]},
    ]
    assert "  every field this one names" in output  # wrapped text is indented under its first line


def test_a_value_wider_than_the_screen_is_printed_whole_not_cut() -> None:
    long_id = "tab-job-" + "9" * 70
    output = _render(60, boxed=True, rows=[[long_id, "deleted", "gone"]])
    assert f"job id:  {long_id}\n" in output
    assert "…" not in output


def test_an_empty_listing_says_none_and_values_are_never_read_as_markup() -> None:
    assert _render(80, boxed=True, rows=[]) == "jobs: none\n"
    output = _render(80, boxed=False, rows=[["[bold]x[/bold]", "absent", "[Errno 111] refused"]])
    assert "[bold]x[/bold]" in output
    assert "[Errno 111] refused" in output


def test_standard_output_is_plain_unless_a_terminal_or_asked_for_a_table(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")  # whatever terminal runs the tests
    Output.stdout().table("jobs", COLUMNS, [ROW])
    plain = capsys.readouterr().out
    assert ROW[0] in plain
    assert not BOX_DRAWING & set(plain)
    assert "\x1b[" not in plain
    Output.stdout(table=True).table("jobs", COLUMNS, [ROW])
    assert {"┏", "│"} <= set(capsys.readouterr().out)


def test_json_and_table_cannot_be_asked_for_together(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["status", "--json", "--table"])
    assert refused.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_times_are_shown_to_the_second_in_utc() -> None:
    assert short_time(1795685400.987654) == "2026-11-26T09:30:00Z"
    assert short_time("2026-11-26T09:30:00.123456+00:00") == "2026-11-26T09:30:00Z"
    assert short_time("2026-11-26T10:30:00+01:00") == "2026-11-26T09:30:00Z"
    assert short_time("") == ""


def test_changes_read_as_old_to_new_with_yes_no_and_a_password_only_as_changed() -> None:
    changes = {
        "provisioned": [True, False],
        "email": ["Ada@Example.com", "ada@example.com"],
        "role": ["member", "admin"],
        "is_active": [True, False],
        "password": "changed",
    }
    assert change_lines(changes) == [
        "provisioned: yes → no",
        "email: Ada@Example.com → ada@example.com",
        "role: member → admin",
        "active: yes → no",
        "password changed",
    ]
    assert change_lines({"role": [None, "viewer"], "is_active": [True, None]}) == [
        "role: (none) → viewer",
        "active: yes → (none)",
    ]
