"""Every command's table at 60, 80 and 120 columns, boxed and plain: what an operator acts on is whole."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import pytest
from rich.console import Console

from tests.support.cli import BOX_DRAWING, blocks
from worker.cli.enqueue import show_import
from worker.cli.health import show_health
from worker.cli.personal_data import show_history
from worker.cli.queue import show_failures, show_job, show_status
from worker.cli.tables import Output
from worker.db.models import UserChange
from worker.jobs.stamps import MICROS
from worker.repositories.audit import change_record
from worker.runtime.health import HealthReport

WIDTHS = [60, 80, 120]
LAYOUTS = pytest.mark.parametrize(("width", "boxed"), [(w, b) for w in WIDTHS for b in (True, False)])
JOB_A = "provisioning:queue:job-3f0c9d1e2b4a5c6d"
JOB_B = "provisioning:queue:job-9a0e7f6d5c4b3a21"
AS_OF = 1795685400  # 2026-11-26T09:30:00Z
MESSAGE = (
    "set_user_role: no user with email later@example.com was provisioned within INTENT_WINDOW "
    "(3600s): check the email, or provision the user; the role is still kept [see python -m worker failed]"
)
NOT_AN_EMAIL = "email: value is not a valid email address: An email address must have an @-sign."
FAILURES = [
    {
        "job_id": JOB_A,
        "function": "deactivate_user",
        "try": 10,
        "error_type": "GaveUp",
        "message": "deactivate_user: gave up after 10 tries: DatabaseUnavailable: cannot reach PostgreSQL",
        "failed_at": AS_OF + 0.75,
        "security": True,
    },
    {
        "job_id": JOB_B,
        "function": "set_user_role",
        "try": 1,
        "error_type": "UserNotFound",
        "message": MESSAGE,
        "failed_at": AS_OF - 60,
        "security": False,
    },
]


def _render(width: int, boxed: bool, show: Callable[[Output], None]) -> str:
    """What `show` prints on a console `width` columns wide."""
    console = Console(width=width, file=io.StringIO())
    show(Output(console, boxed=boxed))
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue()


def _assert_whole(output: str, values: Iterable[str], width: int, boxed: bool) -> None:
    """Each value appears unbroken (not cut, not wrapped); nothing is shortened with an ellipsis."""
    for value in values:
        assert re.search(rf"(?<![\w-]){re.escape(value)}(?![\w-])", output), f"{value!r} not whole:\n{output}"
    assert "…" not in output
    if not boxed:
        assert not BOX_DRAWING & set(output)
    assert all(len(line) <= width for line in output.splitlines() if JOB_A not in line and JOB_B not in line)


def _words(output: str) -> str:
    """The output's words, boxes left out, one space between them: text that wrapped reads whole again."""
    return " ".join("".join(" " if char in BOX_DRAWING else char for char in output).split())


def _change(function: str, status: str, user_id: int | None, seconds: int, **fields: object) -> UserChange:
    as_of = (AS_OF + seconds) * MICROS + 123_456
    recorded = datetime.fromtimestamp(AS_OF + seconds + 1, UTC)
    return UserChange(
        email="ada@example.com",
        user_id=user_id,
        job_id=f"provisioning:queue:job-{function}-{seconds:04d}",
        function=function,
        as_of=as_of,
        status=status,
        recorded_at=recorded,
        **{"was_email": None, "password_changed": False, **fields},
    )


HISTORY = [
    _change(
        "provision_user",
        "created",
        40213,
        0,
        was_provisioned=False,
        provisioned=True,
        role="member",
        is_active=True,
        password_changed=True,
    ),
    _change(
        "update_user", "updated", 40213, 5, was_role="member", role="admin", was_active=True, is_active=False
    ),
    _change("set_user_role", "superseded", 40213, 3, was_role="admin", role="admin"),
    _change(
        "delete_user",
        "deleted",
        40213,
        9,
        was_provisioned=True,
        provisioned=False,
        was_role="admin",
        was_active=False,
        password_changed=True,
    ),
    _change("set_user_role", "pending", None, 12, role="viewer"),
]
CHANGES = [
    "provisioned: no → yes",
    "role: (none) → member",
    "active: (none) → yes",
    "password changed",
    "role: member → admin",
    "active: yes → no",
    "provisioned: yes → no",
    "role: admin → (none)",
    "active: no → (none)",
    "role: (none) → viewer",
]


@LAYOUTS
def test_history_shows_every_status_user_id_and_change_whole(width: int, boxed: bool) -> None:
    rows = [change_record(change) for change in HISTORY]
    output = _render(width, boxed, lambda out: show_history("ada@example.com", rows, out))
    statuses = ["created", "updated", "superseded", "deleted", "pending"]
    functions = ["provision_user", "update_user", "set_user_role", "delete_user"]
    _assert_whole(output, [*statuses, *functions, *CHANGES, "40213", "2026-11-26T09:30:00Z"], width, boxed)
    assert output.count("40213") == 4
    assert "2026-11-26T09:30:00.123456" not in output  # the full stamp is in --json
    if width < 120:
        history = blocks(output)
        assert [row["status"] for row in history] == [[status] for status in statuses]
        assert history[1]["changes"] == ["role: member → admin", "active: yes → no"]
        assert history[2]["changes"] == ["-"]
        assert history[4]["user id"] == ["-"]


@LAYOUTS
def test_failed_jobs_show_function_error_type_and_job_id_whole(width: int, boxed: bool) -> None:
    output = _render(
        width, boxed, lambda out: show_failures(FAILURES, "failed jobs on provisioning:queue", out)
    )
    whole = [JOB_A, JOB_B, "deactivate_user", "set_user_role", "GaveUp", "UserNotFound", "10"]
    _assert_whole(output, [*whole, "2026-11-26T09:30:00Z", "2026-11-26T09:29:00Z"], width, boxed)
    assert "cannot reach PostgreSQL" in _words(output)
    if width < 120:
        found = blocks(output)
        assert [(f["job id"], f["error type"]) for f in found] == [
            ([JOB_A], ["GaveUp"]),
            ([JOB_B], ["UserNotFound"]),
        ]
        assert " ".join(found[1]["message"]) == MESSAGE


@LAYOUTS
def test_status_shows_the_counts_and_recent_failures(width: int, boxed: bool) -> None:
    data = {
        "queue": "provisioning:queue",
        "queued": 1234,
        "deferred": 56,
        "in_progress": 789,
        "live_workers": 3,
        "recent_failures": FAILURES,
    }
    output = _render(width, boxed, lambda out: show_status(data, out))
    _assert_whole(
        output, ["1234", "56", "789", "3", "in progress", JOB_A, "GaveUp", "UserNotFound"], width, boxed
    )
    assert "recent failures" in output
    assert ("┃ queued ┃" in output) is boxed  # the counts fit a table at any of these widths


@LAYOUTS
def test_a_job_shows_its_state_and_each_result_field_on_a_line(width: int, boxed: bool) -> None:
    report = {
        "job_id": JOB_A,
        "state": "complete",
        "function": "provision_users",
        "tries": 2,
        "success": True,
        "result": {
            "created": 998,
            "rejected": 2,
            "rejections": [
                {
                    "index": 17,
                    "error": NOT_AN_EMAIL,
                }
            ],
        },
    }
    output = _render(width, boxed, lambda out: show_job(report, out))
    _assert_whole(output, [JOB_A, "complete", "provision_users", "created: 998", "rejected: 2"], width, boxed)
    (job,) = blocks(output)
    assert (job["job id"], job["state"], job["tries"], job["success"]) == (
        [JOB_A],
        ["complete"],
        ["2"],
        ["yes"],
    )
    assert job["result"][2].startswith("rejections: index: 17, error: email:")
    failed = {"job_id": JOB_B, "state": "failed", "error": f"UserNotFound: {MESSAGE}"}
    output = _render(width, boxed, lambda out: show_job(failed, out))
    _assert_whole(output, [JOB_B, "failed", "UserNotFound:"], width, boxed)
    assert " ".join(blocks(output)[0]["error"]) == f"UserNotFound: {MESSAGE}"


@LAYOUTS
def test_health_names_each_worker_and_the_verdict(width: int, boxed: bool) -> None:
    ids = [f"provisioning-host-{n}-2992{n}-bb0ac{n}" for n in range(2)]
    workers: list[dict[str, Any]] = [{"id": id_, "seen": time.time(), "started": AS_OF} for id_ in ids]
    report = HealthReport(
        workers=workers,
        database="database at revision dc33d2768860, as the code expects",
        database_ok=True,
    )
    output = _render(width, boxed, lambda out: show_health("provisioning:queue", report, None, out))
    _assert_whole(output, [*ids, "2026-11-26T09:30:00Z", "healthy"], width, boxed)
    assert len(re.findall(r"(?<![\d.])\d+\.\d s ago", output)) == 2
    assert "database: database at revision dc33d2768860, as the code expects" in _words(output)
    down = HealthReport(database="cannot reach PostgreSQL: connection refused")
    nobody = _render(width, boxed, lambda out: show_health("provisioning:queue", down, None, out))
    assert nobody.splitlines() == [
        "live workers on queue provisioning:queue: none",
        "database: cannot reach PostgreSQL: connection refused",
        "UNHEALTHY",
    ]


@LAYOUTS
def test_an_import_summary_shows_counts_rejected_rows_and_failed_batches(width: int, boxed: bool) -> None:
    summary = {
        "jobs": 3,
        "users": 2026,
        "created": 2000,
        "updated": 17,
        "unchanged": 5,
        "rejected": 2,
        "already_enqueued": 1,
        "rejections": [
            {
                "row": 1017,
                "error": NOT_AN_EMAIL,
            },
            {"row": 2026, "error": "email: duplicate of entry 3"},
        ],
        "failed_jobs": [f"{JOB_A}: no result in time"],
    }
    output = _render(width, boxed, lambda out: show_import("import of people.csv", summary, out))
    counts = ["3", "2026", "2000", "17", "5", "2", "1", "1017", "already", "enqueued"]
    _assert_whole(output, [*counts, JOB_A, "duplicate of entry 3"], width, boxed)
    assert "import of people.csv" in output
    assert "must have an @-sign." in _words(output)
