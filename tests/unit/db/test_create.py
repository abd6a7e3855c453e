"""`ensure_database` refuses a URL that names no database before it connects anywhere."""

from __future__ import annotations

import pytest

from worker.db.create import ensure_database


async def test_a_url_without_a_database_name_is_refused_with_the_password_hidden() -> None:
    with pytest.raises(
        ValueError, match=r"^postgresql\+asyncpg://postgres:\*\*\*@127\.0\.0\.1:1 names no database$"
    ):
        await ensure_database("postgresql+asyncpg://postgres:s3cret@127.0.0.1:1")
