"""`python -m worker health --scim [URL]`: which URL is asked, and what is never asked (no network here;
tests/integration/cli/test_scim_health.py asks a real server)."""

from __future__ import annotations

import pytest

from tests.support.settings import make_settings
from tests.unit.conftest import NOWHERE_DATABASE_URL
from worker.cli.commands import main
from worker.cli.scim_health import check_scim, default_url

ANY_ADDRESS = "0.0.0.0"  # noqa: S104 - what a container listens on


def test_the_default_url_is_scim_host_and_port_and_any_address_is_asked_on_the_loopback() -> None:
    assert default_url(make_settings(NOWHERE_DATABASE_URL, scim_port=9000)) == "http://127.0.0.1:9000"
    assert default_url(make_settings(NOWHERE_DATABASE_URL, scim_host=ANY_ADDRESS)) == "http://127.0.0.1:8080"
    assert default_url(make_settings(NOWHERE_DATABASE_URL, scim_host="::")) == "http://127.0.0.1:8080"
    assert default_url(make_settings(NOWHERE_DATABASE_URL, scim_host="scim.internal")) == (
        "http://scim.internal:8080"
    )
    assert default_url(make_settings(NOWHERE_DATABASE_URL, scim_host="::1")) == "http://[::1]:8080"


async def test_only_http_urls_are_asked() -> None:
    found = await check_scim("file:///etc/passwd")
    assert not found.ok
    assert "http://" in found.detail


def test_enqueue_refuses_a_boolean_it_cannot_read(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["enqueue", "update_user", "--email", "a@example.com", "--active", "maybe"])
    assert refused.value.code == 2
    assert "--active: expected true or false, not 'maybe'" in capsys.readouterr().err
