"""Group commit: single-user jobs that arrive together share one statement and one commit.

Per-job transactions cap the worker at a fraction of what the queue delivers: each costs a
session, several round trips and a commit. Here every job still gets its own result, but the
commands of all jobs waiting at that moment go to PostgreSQL as one set-based merge (one command
per person: a second command for the same identity key waits for the next group). A job whose
group fails for a
transient reason is retried like any other; one whose group fails for any other reason runs again
on its own (`RunAlone`), so a bad row can only ever fail its own job.

Under load (the last group had more than one job), each group collects for up to `window`
seconds before it is written: a few milliseconds of latency buy much larger groups, so fewer
statements and commits for PostgreSQL and less per-statement work for the worker. A lone job is
written at once, so light traffic sees no delay.

Traced, a group's write is one span (`group commit`), whose SQL spans are its children: the child of
the first sampled job's span in the group, linked to the spans of the other sampled ones, since one
transaction serves them all and a span has one parent.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from worker import tracing
from worker.db.session import SessionFactory
from worker.repositories.user import UserCommand
from worker.runtime import metrics
from worker.runtime.retries import is_transient
from worker.services.outcome import UserOutcome
from worker.services.unit_of_work import SqlAlchemyUnitOfWork
from worker.services.users import apply_commands

if TYPE_CHECKING:
    from opentelemetry.trace import SpanContext

logger = logging.getLogger(__name__)


class RunAlone(Exception):
    """This job cannot be settled with its group: run it on its own."""


@dataclass(slots=True)
class _Waiting:
    command: UserCommand
    future: asyncio.Future[UserOutcome]
    span: SpanContext | None = None  # its job's span, when traced


class CommandGroups:
    """Collects concurrent single-user commands into group writes."""

    def __init__(
        self, session_factory: SessionFactory, *, retention: float, max_group: int = 500, window: float = 0.0
    ) -> None:
        self._session_factory = session_factory
        self._retention = retention
        self._max_group = max_group
        self._window = window
        self._waiting: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None

    async def apply(self, command: UserCommand) -> UserOutcome:
        """The outcome of `command`, written together with whatever else is waiting."""
        future: asyncio.Future[UserOutcome] = asyncio.get_running_loop().create_future()
        span = tracing.current_span_context() if tracing.tracer() is not None else None
        self._waiting.append(_Waiting(command, future, span))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all(), name="command-group-writer")
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
            keys: set[str] = set()
            for waiting in self._waiting:
                if waiting.future.done():  # its job was cancelled meanwhile
                    continue
                key = waiting.command["key"]
                # One statement may touch a person once: a second job for a person waits for the next group.
                if key in keys or len(group) >= self._max_group:
                    later.append(waiting)
                else:
                    keys.add(key)
                    group.append(waiting)
            self._waiting = later
            under_load = len(group) > 1
            if group:
                metrics.GROUP_SIZE.observe(len(group))
                await self._write(group)

    async def _write(self, group: list[_Waiting]) -> None:
        try:
            outcomes = await self._traced_apply(group)
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
        for waiting, outcome in zip(group, outcomes, strict=True):
            if not waiting.future.done():
                waiting.future.set_result(outcome)

    async def _traced_apply(self, group: list[_Waiting]) -> list[UserOutcome]:
        """The group's outcomes, in one unit of work; a span of its own when traced."""
        tracer = tracing.tracer()
        if tracer is None:
            return await self._apply(group)
        spans = [waiting.span for waiting in group if waiting.span is not None]
        # Links only to the jobs whose traces are kept: a link to a span never exported leads nowhere.
        sampled = [span for span in spans if span.trace_flags.sampled]
        # Its parent is explicit: the writer task runs in the context of whichever job started it.
        # A group of jobs none of whose traces is sampled is not sampled either.
        parent = sampled[0] if sampled else spans[0] if spans else None
        with tracing.span(
            tracer,
            "group commit",
            parent=parent,
            links=sampled[1:],
            attributes={"group.size": len(group)},
        ):
            return await self._apply(group)

    async def _apply(self, group: list[_Waiting]) -> list[UserOutcome]:
        uow = SqlAlchemyUnitOfWork(self._session_factory)
        return await apply_commands(uow, [w.command for w in group], retention=self._retention)
