"""`python -m worker import`: batch-size limits, missing files, re-runs with one prefix, waiting in vain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from arq.connections import ArqRedis

from tests.support.cli import run_cli
from worker.settings import Settings

pytestmark = pytest.mark.slow


def _people(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "people.csv"
    path.write_text("email,role\n" + "".join(f"p{i}@example.com,member\n" for i in range(count)))
    return path


@pytest.mark.parametrize("size", ["-1", "6"])
async def test_a_batch_size_outside_one_to_bulk_max_batch_is_refused(
    settings: Settings, redis: ArqRedis, tmp_path: Path, size: str
) -> None:
    done = await run_cli(
        settings, "import", str(_people(tmp_path, 3)), "--batch-size", size, cwd=tmp_path, bulk_max_batch=5
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --batch-size must be between 1 and BULK_MAX_BATCH (5)"
    assert await redis.zcard(settings.queue_name) == 0


async def test_a_missing_file_is_named_in_the_error(settings: Settings, tmp_path: Path) -> None:
    missing = tmp_path / "nobody.csv"
    done = await run_cli(settings, "import", str(missing), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ")
    assert str(missing) in done.stderr


async def test_running_an_import_again_with_its_prefix_enqueues_nothing_twice(
    settings: Settings, redis: ArqRedis, tmp_path: Path
) -> None:
    people = str(_people(tmp_path, 3))
    prefix = f"{settings.queue_name}:import"
    first = await run_cli(
        settings, "import", people, "--batch-size", "2", "--job-prefix", prefix, "--json", cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout == '{"jobs": 2, "users": 3}\n'
    again = await run_cli(
        settings, "import", people, "--batch-size", "2", "--job-prefix", prefix, cwd=tmp_path
    )
    assert again.returncode == 0, again.stderr
    *title, header, counts = again.stdout.splitlines()
    assert " ".join(line.strip() for line in title) == f"import of {people}"  # a long path: a line of its own
    assert (header.split(), counts.split()) == (["jobs", "users", "already", "enqueued"], ["0", "3", "2"])
    again = await run_cli(
        settings, "import", people, "--batch-size", "2", "--job-prefix", prefix, "--json", cwd=tmp_path
    )
    assert json.loads(again.stdout) == {"jobs": 0, "users": 3, "already_enqueued": 2}
    assert await redis.zcard(settings.queue_name) == 2


async def test_waiting_without_a_worker_lists_each_batch_that_got_no_result(
    settings: Settings, tmp_path: Path
) -> None:
    prefix = f"{settings.queue_name}:import"
    done = await run_cli(
        settings,
        *("import", str(_people(tmp_path, 3)), "--batch-size", "2", "--job-prefix", prefix),
        *("--wait", "--timeout", "0.2", "--json"),
        cwd=tmp_path,
    )
    assert done.returncode == 1
    summary = json.loads(done.stdout)
    assert summary["failed_jobs"] == [f"{prefix}-0: no result in time", f"{prefix}-1: no result in time"]
    assert (summary["jobs"], summary["users"], summary["created"], summary["rejected"]) == (2, 3, 0, 0)
