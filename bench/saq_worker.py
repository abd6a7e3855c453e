"""A SAQ worker doing one raw asyncpg transaction per job: the peer a user might pick instead.

Each job does the least a hand-written job must do for the schema: compute the email's identity
key, then one statement (so one implicit transaction and one round trip) that inserts the
person's `user_states` row (key and key version only: no stamps, no intents) and the `users` row,
both `ON CONFLICT (key) DO NOTHING`. No ordering by stamps, no audit row.

python -m bench.saq_worker REDIS_URL QUEUE DSN JOBS   → prints {"rate": jobs/s}
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import asyncpg
from saq import Queue, Worker

from worker.jobs.identity import KEY_VERSION, identity_key

INSERT_USER = (
    "WITH state AS (INSERT INTO user_states (key, key_version) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING) "
    "INSERT INTO users (key, email, role) VALUES ($1, $3, $4) ON CONFLICT (key) DO NOTHING"
)
"""The person's key row and user row in one statement: the foreign key is checked at its end."""


async def main(redis_url: str, queue_name: str, dsn: str, jobs: int) -> dict[str, float]:
    """Run the queue dry in burst mode; rate from the first job's start to the last job's end."""
    queue = Queue.from_url(redis_url, name=queue_name)
    pool = await asyncpg.create_pool(dsn, min_size=20, max_size=20)
    marks: dict[str, float] = {}

    async def insert_user(ctx: Any, *, email: str, role: str) -> None:
        key = identity_key(email)
        async with pool.acquire() as connection:
            await connection.execute(INSERT_USER, key, KEY_VERSION, email, role)

    async def before(ctx: Any) -> None:
        marks.setdefault("first", time.perf_counter())

    async def after(ctx: Any) -> None:
        marks["last"] = time.perf_counter()

    worker = Worker(
        queue,
        [insert_user],
        concurrency=100,
        burst=True,
        dequeue_timeout=0.5,
        before_process=before,
        after_process=after,
    )
    try:
        await worker.start()
    finally:
        await pool.close()
        await queue.disconnect()
    return {"rate": jobs / (marks["last"] - marks["first"])}


if __name__ == "__main__":
    url, name, dsn, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    print(json.dumps(asyncio.run(main(url, name, dsn, count))))
