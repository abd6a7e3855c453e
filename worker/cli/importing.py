"""Reading users to provision in bulk from CSV or JSON-lines files."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

CSV_COLUMNS = ("email", "role", "password_hash")


class UnreadableFile(ValueError):
    """The file is not CSV with the expected header, nor JSON lines of objects."""


def read_users(path: Path) -> Iterator[dict[str, Any]]:
    """Users from `path`: `.jsonl`/`.ndjson` (one JSON object a line) or CSV with a header row."""
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        return _read_json_lines(path)
    return _read_csv(path)


def _read_csv(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = tuple(reader.fieldnames or ())
        unknown = [name for name in header if name not in CSV_COLUMNS]
        if "email" not in header or "role" not in header or unknown:
            raise UnreadableFile(
                f"{path}: the CSV header must name email and role (and optionally password_hash); "
                f"got {header}"
            )
        for row in reader:
            yield {name: value for name, value in row.items() if value not in (None, "")}


def _read_json_lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except ValueError as error:
                raise UnreadableFile(f"{path}:{number}: not JSON ({error})") from None


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of at most `size` items."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch
