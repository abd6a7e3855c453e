"""Group commit for `provision_user`: jobs that arrive together share one statement and one commit.

Per-job transactions cap the worker at a fraction of what the queue delivers: each costs a
session, several round trips and a commit. Here every job still gets its own result, but the
writes of all jobs waiting at that moment go to PostgreSQL as one set-based upsert. A job whose
group fails for a transient reason is retried like any other; one whose group fails for any other
reason, or that raced another transaction, runs again on its own (`RunAlone`), so a bad row can
only ever fail its own job.

Under load (the last group had more than one job), each group collects for up to `window`
seconds before it is written: a few milliseconds of latency buy much larger groups, so fewer
statements and commits for PostgreSQL and less per-statement work for the worker. A lone job is
written at once, so light traffic sees no delay.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from worker import metrics
from worker.db.models import ROLES
from worker.db.session import SessionFactory, db_session
from worker.payloads import ProvisionUser
from worker.repositories.user import UserSpec
from worker.retries import is_transient
from worker.services.outcome import Status, UserOutcome
from worker.services.unit_of_work import UnitOfWork

logger = logging.getLogger(__name__)


class RunAlone(Exception):
    """This job cannot be settled with its group: run it on its own."""


@dataclass(slots=True)
class _Waiting:
    command: ProvisionUser
    future: asyncio.Future[UserOutcome]


class ProvisionGroups:
    """Collects concurrent `provision_user` commands (without sealed passwords) into group writes."""

    def __init__(self, session_factory: SessionFactory, *, max_group: int = 500, window: float = 0.0) -> None:
        self._session_factory = session_factory
        self._max_group = max_group
        self._window = window
        self._waiting: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None

    async def provision(self, command: ProvisionUser) -> UserOutcome:
        """The outcome of `command`, written together with whatever else is waiting."""
        if command.password_sealed is not None:
            raise RunAlone  # needs its own read, hash and write
        future: asyncio.Future[UserOutcome] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(command, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all(), name="provision-group-writer")
        return await future

    async def _write_all(self) -> None:
        await asyncio.sleep(0)  # let the jobs started in this turn of the loop join the first group
        under_load = False
        while self._waiting:
            if under_load and self._window and len(self._waiting) < self._max_group:
                # Let the group fill: one statement and one commit for more jobs.
                await asyncio.sleep(self._window)
            group: list[_Waiting] = []
            later: list[_Waiting] = []
            emails: set[str] = set()
            for waiting in self._waiting:
                if waiting.future.done():  # its job was cancelled meanwhile
                    continue
                email = waiting.command.email.lower()
                # One statement may touch a row once: a second job for an email waits for the next group.
                if email in emails or len(group) >= self._max_group:
                    later.append(waiting)
                else:
                    emails.add(email)
                    group.append(waiting)
            self._waiting = later
            under_load = len(group) > 1
            if group:
                metrics.GROUP_SIZE.observe(len(group))
                await self._write(group)

    async def _write(self, group: list[_Waiting]) -> None:
        specs: list[UserSpec] = [
            {
                "email": w.command.email,
                "role": ROLES[w.command.role],
                "hashed_password": w.command.password_hash,
            }
            for w in group
        ]
        try:
            async with db_session(self._session_factory) as session, UnitOfWork(session) as uow:
                rows = await uow.users.provision_group(specs)
                await uow.commit()
        except Exception as error:
            transient = is_transient(error)
            if not transient:
                logger.warning(
                    "group of %d failed (%s); its jobs run alone", len(group), type(error).__name__
                )
            for waiting in group:
                if not waiting.future.done():
                    waiting.future.set_exception(error if transient else RunAlone())
            return
        for waiting, row in zip(group, rows, strict=True):
            if waiting.future.done():
                continue
            if row.id is None or row.email is None or row.role is None:
                waiting.future.set_exception(RunAlone())  # raced an insert the statement could not see
                continue
            status: Status = row.status  # type: ignore[assignment]
            waiting.future.set_result(
                UserOutcome(
                    status=status, email=row.email, user_id=row.id, role=row.role, is_active=row.is_active
                )
            )
