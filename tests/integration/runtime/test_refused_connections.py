"""What asyncpg really raises on a closed port is transient (the unit tier fakes that refusal)."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.tcp_proxy import free_port
from worker.runtime.retries import is_transient


async def test_a_refused_connection_is_transient() -> None:
    engine = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x")
    try:
        with pytest.raises(OSError, match=r"Connect call failed|Connection refused") as failure:
            async with engine.connect():
                pass
    finally:
        await engine.dispose()
    assert is_transient(failure.value)
