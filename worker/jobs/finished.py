"""The finish announcements: the channel on which a worker names each job it finished.

The worker PUBLISHes a finished job's id on `<queue>:finished` in the MULTI that writes its result
(docs/jobs.md, "Waiting for a result"); `worker.waiting` is the enqueuer's side.
"""

from __future__ import annotations


def finished_channel(queue_name: str) -> str:
    """The channel on which the worker announces the ids of the jobs of `queue_name` it finished."""
    return f"{queue_name}:finished"
