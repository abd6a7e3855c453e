"""Settings for tests: built in memory (no `.env`, no I/O) on a queue of their own."""

from __future__ import annotations

import os
import uuid
from typing import Any

from tests.support.ids import RUN_ID
from worker.settings import Settings

# The Redis db index tests use (not the developer's 0).
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


TEST_ERASURE_KEY = "test-erasure-key-" + "0123456789abcdef" * 2
"""ERASURE_KEYS for tests (a secret of their own, never a deployment's)."""


def make_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings for a test: its own database, Redis db index and queue; no `.env` read."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": TEST_REDIS_URL,
        "queue_name": f"t{RUN_ID}:{uuid.uuid4().hex[:8]}:queue",
        "db_pool_size": 5,
        "log_format": "off",  # in-process workers leave pytest's log capture alone
        "erasure_keys": TEST_ERASURE_KEY,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)
