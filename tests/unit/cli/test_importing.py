"""Reading a file of users for `python -m worker import`: CSV and JSON lines, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.cli.importing import UnreadableFile, batched, read_users


def test_read_users_from_csv_and_json_lines(tmp_path: Path) -> None:
    csv_file = tmp_path / "users.csv"
    csv_file.write_text("email,role,password_hash\na@example.com,admin,\nb@example.com,viewer,$argon2id$x\n")
    jsonl = tmp_path / "users.jsonl"
    jsonl.write_text(
        '{"email": "c@example.com", "role": "member"}\n\n{"email": "d@example.com", "role": "admin"}\n'
    )
    assert list(read_users(csv_file)) == [
        {"email": "a@example.com", "role": "admin"},
        {"email": "b@example.com", "role": "viewer", "password_hash": "$argon2id$x"},
    ]
    assert [u["email"] for u in read_users(jsonl)] == ["c@example.com", "d@example.com"]
    assert [len(b) for b in batched(range(7), 3)] == [3, 3, 1]


def test_unreadable_files_are_refused_clearly(tmp_path: Path) -> None:
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("mail,role\nx,y\n")
    with pytest.raises(UnreadableFile, match="the CSV header must name email and role"):
        list(read_users(bad_csv))
    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_text('{"email": "a@example.com"}\n{oops\n')
    with pytest.raises(UnreadableFile, match=r"bad.jsonl:2: not JSON"):
        list(read_users(bad_jsonl))
