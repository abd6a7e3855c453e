"""Logging that never carries job arguments."""

from __future__ import annotations

import json
import logging
import sys

from worker.jobs.errors import PermanentJobError
from worker.runtime.runs import JobRun

_JOB_START = "%6.2fs → %s(%s)%s"  # arq.worker's "job started" line: delay, job_id:function, args, try
_JOB_FAILED = "%6.2fs ! %s failed, %s: %s"  # arq.worker's "job failed" line: …, error type, error text
REDACTED = "…"


class RedactJobArguments(logging.Filter):
    """Keep job arguments out of ARQ's log lines: job id, function, try and error type stay.

    The start line loses its argument list. A failure with one of our permanent errors loses its
    text (it names the payload's fields and values; the job's result keeps it for the enqueuer)
    and its traceback (it is an expected outcome, not a bug).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops it."""
        if not isinstance(record.args, tuple) or len(record.args) != 4:
            return True
        if record.msg == _JOB_START:
            delay, ref, _arguments, extra = record.args
            record.args = (delay, ref, REDACTED, extra)
        elif record.msg == _JOB_FAILED and record.exc_info and _is_permanent(record.exc_info[1]):
            delay, ref, error_type, _text = record.args
            record.args = (delay, ref, error_type, REDACTED)
            record.exc_info = None
        return True


def _is_permanent(error: BaseException | None) -> bool:
    return isinstance(error, PermanentJobError)


_redaction = RedactJobArguments()


def install_log_redaction() -> None:
    """Attach the redaction to ARQ's worker logger (idempotent)."""
    logger = logging.getLogger("arq.worker")
    if _redaction not in logger.filters:
        logger.addFilter(_redaction)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any `event` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` as a JSON line."""
        line: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "event", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            line["error_type"] = line.get("error_type") or record.exc_info[0].__name__
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """Human-readable lines for development; job events show their fields."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        """The message, followed by the event's fields as key=value."""
        text = super().format(record)
        fields = getattr(record, "event", None)
        if isinstance(fields, dict):
            text += " " + " ".join(f"{key}={value}" for key, value in fields.items() if key != "event")
        return text


def configure_logging(log_format: str) -> None:
    """Send every logger (ARQ's included) through one handler in `json` or `console` format.

    Runs in the worker's startup hook, after the arq CLI has set up its own handler, which is
    removed here so that each line is written once. ARQ's per-job start/finish lines give way to
    our one structured line per job (logger `worker.jobs`).
    """
    if log_format == "off":
        return  # embedded use (tests, another program's loop): leave logging as the host set it
    chosen = log_format if log_format != "auto" else ("console" if sys.stderr.isatty() else "json")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if chosen == "json" else ConsoleFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    arq_logger = logging.getLogger("arq")
    for existing in list(arq_logger.handlers):
        arq_logger.removeHandler(existing)
    arq_logger.propagate = True
    logging.getLogger("arq.worker").setLevel(logging.WARNING)


job_logger = logging.getLogger("worker.jobs")


def log_job_event(run: JobRun) -> None:
    """The one line per finished job: id, function, try, outcome, duration, error type (no arguments)."""
    event: dict[str, object] = {
        "event": "job",
        "job_id": run.job_id,
        "function": run.function,
        "try": run.job_try,
        "outcome": run.ending,
        "duration_ms": round(run.seconds * 1000, 2),
    }
    if run.error_type:
        event["error_type"] = run.error_type
    level = logging.WARNING if run.ending == "failed" else logging.INFO
    job_logger.log(level, "job %s %s", run.ending, run.function, extra={"event": event})
