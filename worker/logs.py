"""Logging that never carries job arguments."""

from __future__ import annotations

import logging

_JOB_START = "%6.2fs → %s(%s)%s"  # arq.worker's "job started" line: delay, job_id:function, args, try
REDACTED = "…"


class RedactJobArguments(logging.Filter):
    """Drop the arguments from ARQ's job-start lines; keep the job id, function and try."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops it."""
        if record.msg == _JOB_START and isinstance(record.args, tuple) and len(record.args) == 4:
            delay, ref, _arguments, extra = record.args
            record.args = (delay, ref, REDACTED, extra)
        return True


_redaction = RedactJobArguments()


def install_log_redaction() -> None:
    """Attach the redaction to ARQ's worker logger (idempotent)."""
    logger = logging.getLogger("arq.worker")
    if _redaction not in logger.filters:
        logger.addFilter(_redaction)
