"""`python -m worker scim`'s checks before it serves: each refusal is one line naming the fix."""

from __future__ import annotations

from tests.support.settings import make_settings
from tests.unit.conftest import NOWHERE_DATABASE_URL
from worker.cli.scim_server import EXIT_CONFIGURATION, preflight


async def test_without_a_token_it_refuses_as_a_configuration_error_before_any_connection() -> None:
    refused = await preflight(make_settings(NOWHERE_DATABASE_URL, scim_tokens=None))
    assert refused is not None
    status, line = refused
    assert status == EXIT_CONFIGURATION == 2
    assert "SCIM_TOKENS is not set" in line
    assert "\n" not in line


async def test_a_blank_token_list_counts_as_none() -> None:
    refused = await preflight(make_settings(NOWHERE_DATABASE_URL, scim_tokens=" , "))
    assert refused is not None
    assert refused[0] == EXIT_CONFIGURATION


async def test_an_unreachable_database_is_status_1_with_its_url_masked() -> None:
    url = "postgresql+asyncpg://postgres:pw-not-shown@127.0.0.1:1/unit"
    refused = await preflight(make_settings(url, scim_tokens="a-token-never-printed"))
    assert refused is not None
    status, line = refused
    assert status == 1
    assert line.startswith("error: cannot reach PostgreSQL at postgresql+asyncpg://postgres:***@127.0.0.1:1/")
    assert "pw-not-shown" not in line
    assert "a-token-never-printed" not in line
    assert "\n" not in line
