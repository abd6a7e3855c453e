"""`python -m worker health --scim [URL]` / `--scim-only` against a real server: healthy only on 200."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.tcp_proxy import free_port
from tests.unit.conftest import NOWHERE_DATABASE_URL, NOWHERE_REDIS_URL
from worker.cli.commands import main
from worker.cli.scim_health import check_scim
from worker.settings import get_settings

ANY_ADDRESS = "0.0.0.0"  # noqa: S104 - what a container listens on


class _Answer(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def healthz() -> Iterator[tuple[str, type[_Answer]]]:
    """A local HTTP server whose /healthz answers `handler.status`."""
    handler = type("Handler", (_Answer,), {"status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> Iterator[None]:
    """Settings from a clean environment that points nowhere (no `.env`: the cwd is empty)."""
    monkeypatch.chdir(str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", NOWHERE_DATABASE_URL)
    monkeypatch.setenv("REDIS_URL", NOWHERE_REDIS_URL)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def test_200_is_healthy_anything_else_is_not(healthz: tuple[str, type[_Answer]]) -> None:
    url, handler = healthz
    assert (await check_scim(url)).ok
    handler.status = 503
    found = await check_scim(url + "/")
    assert not found.ok
    assert found.detail == "answers 503 on /healthz"


async def test_a_closed_port_is_not_reachable_and_credentials_in_the_url_are_not_shown() -> None:
    found = await check_scim(f"http://someone:pw-not-shown@127.0.0.1:{free_port()}", within=2)
    assert not found.ok
    assert found.detail.startswith("not reachable")
    assert "pw-not-shown" not in found.url + found.detail
    assert found.url.startswith("http://***@127.0.0.1:")


@pytest.mark.usefixtures("cli_env")
def test_scim_only_checks_nothing_but_the_scim_service(
    healthz: tuple[str, type[_Answer]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, handler = healthz
    # Redis and PostgreSQL point nowhere: asking them would fail.
    assert main(["health", "--scim-only", "--scim", url]) == 0
    assert capsys.readouterr().out.splitlines() == [f"scim {url}: answers 200 on /healthz", "healthy"]
    handler.status = 500
    assert main(["health", "--scim-only", "--scim", url, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report == {"ok": False, "scim": {"url": url, "ok": False, "detail": "answers 500 on /healthz"}}


@pytest.mark.usefixtures("cli_env")
def test_scim_only_without_a_url_asks_scim_host_and_port(
    monkeypatch: pytest.MonkeyPatch, healthz: tuple[str, type[_Answer]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _handler = healthz
    monkeypatch.setenv("SCIM_HOST", ANY_ADDRESS)
    monkeypatch.setenv("SCIM_PORT", url.rsplit(":", 1)[1])
    assert main(["health", "--scim-only"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"scim {url}: answers 200 on /healthz"
