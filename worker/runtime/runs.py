"""How one run of a task went: the value `run_job` fills in and the metrics and the log line read.

It has a module of its own so that `metrics` and `logs` can take it without importing `job_run`,
the orchestrator that imports them both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

Ending = Literal["succeeded", "retried", "failed", "cancelled", "unknown"]


@dataclass(slots=True)
class JobRun:
    """How one run of a task went: what the metrics count and the job's log line says."""

    function: str
    job_id: str | None
    job_try: int | None
    started: float = field(default_factory=time.perf_counter)
    ending: Ending = "unknown"  # stays so only if something other than an Exception ended the run
    error_type: str | None = None
    seconds: float = 0.0

    def end(self, ending: Ending, error: BaseException | None = None) -> None:
        """Note how the run ended, and the type of the error that ended it."""
        self.ending = ending
        if error is not None:
            self.error_type = type(error).__name__
