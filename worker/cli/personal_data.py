"""`python -m worker history | erase EMAIL`: one person's audit trail, and erasing what is kept of them."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from pydantic_core import PydanticCustomError

from worker.cli.tables import Cell, Column, Output, change_lines, short_time
from worker.client import ProvisioningClient
from worker.db.session import SessionFactory, create_engine, create_session_factory
from worker.jobs.emails import email_key
from worker.repositories.audit import change_record
from worker.runtime.failures import erase_failures
from worker.services import maintenance
from worker.services.erasure import ErasureKeys
from worker.services.unit_of_work import SqlAlchemyUnitOfWork
from worker.settings import Settings, get_settings

HISTORY_COLUMNS = (
    Column("as of"),
    Column("function"),
    Column("status"),
    Column("user id"),
    Column("changes"),
    Column("job id"),
    Column("recorded"),
)


@asynccontextmanager
async def _sessions(settings: Settings) -> AsyncIterator[SessionFactory]:
    """Sessions on an engine of the command's own, disposed of afterwards."""
    engine = create_engine(settings)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


async def history_command(options: argparse.Namespace) -> int:
    settings = get_settings()
    key = _identity_key(options.email)
    if key is None:
        return 2
    async with _sessions(settings) as sessions, SqlAlchemyUnitOfWork(sessions) as uow:
        rows = [change_record(change) for change in await uow.audit.history(key, limit=options.limit)]
    if options.json:
        print(json.dumps(rows, sort_keys=True))
        return 0
    show_history(options.email, rows, Output.stdout(table=options.table))
    return 0


def show_history(email: str, rows: Sequence[Mapping[str, Any]], out: Output) -> None:
    """`history`: one row per command outcome, oldest first; changes one a line."""
    cells: list[list[Cell]] = [
        [
            short_time(row["as_of_time"]),
            row["function"],
            row["status"],
            "" if row["user_id"] is None else str(row["user_id"]),
            change_lines(row["changes"]),
            row["job_id"],
            short_time(row["recorded_at"]),
        ]
        for row in rows
    ]
    out.table(f"history of {email} (oldest command first)", HISTORY_COLUMNS, cells)


def _identity_key(email: str) -> str | None:
    """The identity key of an email given on the command line, or None after saying why there is none."""
    try:
        return email_key(email)
    except PydanticCustomError as error:
        print(f"error: {email!r} is not an email the worker accepts: {error}", file=sys.stderr)
        return None


async def erase_command(options: argparse.Namespace) -> int:
    settings = get_settings()
    if _identity_key(options.email) is None:
        return 2
    try:
        async with _sessions(settings) as sessions:
            uow = SqlAlchemyUnitOfWork(sessions)
            removed = await maintenance.erase(uow, options.email, ErasureKeys(settings.erasure_key_list))
    except maintenance.ErasureNotConfigured as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if removed is None:
        print(
            f"error: a user with email {options.email} exists: delete it first "
            f"(python -m worker enqueue delete_user --email {options.email} --wait), then erase",
            file=sys.stderr,
        )
        return 2
    async with ProvisioningClient.connect(settings) as client:
        failures = await erase_failures(client.redis, settings.queue_name, options.email)
    stamps, audit = removed
    report = {"email": options.email, "stamp_rows": stamps, "audit_rows": audit, "failed_jobs": failures}
    if options.json:
        print(json.dumps(report, sort_keys=True))
    else:
        print(
            f"erased {options.email}: {stamps} tombstone/intent row(s), {audit} audit row(s), "
            f"{failures} failed-job record(s)"
        )
    return 0
