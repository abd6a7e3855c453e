"""The `arq` process refuses to start, with one line naming the fix."""

from __future__ import annotations

import subprocess

from tests.support.processes import run_module, worker_env
from tests.support.settings import make_settings
from worker.db.migrations import head_revisions

HEAD = ", ".join(sorted(head_revisions()))


def _arq_worker(database_url: str, **extra: object) -> subprocess.CompletedProcess[str]:
    return run_module(
        "arq", "worker.main.WorkerSettings", env=worker_env(make_settings(database_url), **extra)
    )


def test_the_arq_process_exits_non_zero_with_one_line_naming_the_fix(empty_database_url: str) -> None:
    finished = _arq_worker(empty_database_url)
    assert finished.returncode == 1
    assert "Traceback" not in finished.stderr
    assert finished.stderr.strip().splitlines()[-1] == (
        f"database at revision None, code expects {HEAD}: run `make db-migrate`"
    )


def test_the_arq_process_exits_non_zero_when_the_database_is_unreachable() -> None:
    finished = _arq_worker(
        "postgresql+asyncpg://postgres:pw-not-shown@127.0.0.1:1/provisioning", startup_db_wait=1
    )
    assert finished.returncode == 1
    assert "is not reachable yet (ConnectionRefusedError); retrying" in finished.stderr  # it waited first
    last = finished.stderr.strip().splitlines()[-1]
    assert last.startswith("cannot reach PostgreSQL at postgresql+asyncpg://postgres:***@127.0.0.1:1/")
    assert "pw-not-shown" not in finished.stderr + finished.stdout
