"""`python -m worker scim` as a process: its refusals, its graceful stop, its health and metrics,
and token rotation (a restart with a new SCIM_TOKENS list)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.cli import run_cli
from tests.support.processes import run_module, stop
from tests.support.scim import (
    ScimStack,
    new_token,
    running_stack,
    scim_env,
    scim_settings,
    start_scim,
    wait_for_scim,
)
from tests.support.settings import make_settings
from tests.support.tcp_proxy import free_port
from worker.db.migrations import head_revisions

pytestmark = pytest.mark.slow
HEAD = ", ".join(sorted(head_revisions()))
ANY_ADDRESS = "0.0.0.0"  # noqa: S104 - what a container listens on


def _scim_process(settings_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_module("worker", "scim", env=settings_env)


def test_without_a_token_it_exits_2_with_one_line_saying_so(database_url: str) -> None:
    env = scim_env(scim_settings(database_url))
    env.pop("SCIM_TOKENS")
    finished = _scim_process(env)
    assert finished.returncode == 2
    assert "Traceback" not in finished.stderr
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: SCIM_TOKENS is not set")


def test_a_database_not_at_head_is_exit_1_naming_the_fix(empty_database_url: str) -> None:
    finished = _scim_process(scim_env(scim_settings(empty_database_url)))
    assert finished.returncode == 1
    assert finished.stderr.strip().splitlines() == [
        f"error: database at revision None, code expects {HEAD}: run `make db-migrate`"
    ]


def test_an_unreachable_database_is_exit_1_and_its_password_is_not_shown() -> None:
    settings = scim_settings("postgresql+asyncpg://postgres:pw-not-shown@127.0.0.1:1/provisioning")
    finished = _scim_process(scim_env(settings))
    assert finished.returncode == 1
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        "error: cannot reach PostgreSQL at postgresql+asyncpg://postgres:***@127.0.0.1:1/"
    )
    assert "pw-not-shown" not in finished.stderr + finished.stdout
    for token in settings.scim_token_list:
        assert token not in finished.stderr + finished.stdout


async def test_sigterm_lets_a_request_in_flight_finish_then_exits_0(
    database_url: str, tmp_path: Path
) -> None:
    # No worker: a POST waits (SCIM_JOB_WAIT) for a job nobody runs, then gets its 503.
    settings = scim_settings(database_url, scim_job_wait=2)
    log = tmp_path / "scim.log"
    process = start_scim(settings, log)
    try:
        await wait_for_scim(f"http://127.0.0.1:{settings.scim_port}", process, log)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{settings.scim_port}/scim/v2/",
            headers={"Authorization": f"Bearer {settings.scim_token_list[0]}"},
            timeout=30,
        ) as client:
            waiting = asyncio.create_task(
                client.post(
                    "Users",
                    json={
                        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                        "userName": "sigterm@example.com",
                    },
                )
            )
            await asyncio.sleep(0.5)
            process.send_signal(signal.SIGTERM)
            response = await waiting
        assert response.status_code == 503
        assert response.headers["retry-after"]
        assert await asyncio.to_thread(process.wait, 30) == 0
    finally:
        stop(process)
    assert "Traceback" not in log.read_text()


async def test_health_checks_the_scim_service_too(scim_stack: ScimStack, tmp_path: Path) -> None:
    settings = scim_stack.settings
    both = await run_cli(settings, "health", "--scim", scim_stack.root_url, "--json", cwd=tmp_path)
    assert both.returncode == 0, both.stdout + both.stderr
    assert '"scim": {"detail": "answers 200 on /healthz"' in both.stdout
    only = await run_cli(
        settings, "health", "--scim-only", cwd=tmp_path, scim_host=ANY_ADDRESS, scim_port=scim_stack.port
    )
    assert only.returncode == 0, only.stdout + only.stderr
    nobody = await run_cli(
        settings, "health", "--scim-only", "--scim", f"http://127.0.0.1:{free_port()}", cwd=tmp_path
    )
    assert nobody.returncode == 1
    assert "not reachable" in nobody.stdout


async def test_metrics_count_requests_by_route_and_status(database_url: str, tmp_path: Path) -> None:
    settings = scim_settings(database_url)
    port = free_port()
    async with running_stack(settings, tmp_path, metrics_port=port) as stack:
        async with stack.client() as client:
            assert (await client.get("Users", params={"count": "1"})).status_code == 200
            assert (await client.get("Users/999999999")).status_code == 404
        async with httpx.AsyncClient() as plain:
            text = (await plain.get(f"http://127.0.0.1:{port}/metrics")).text
    counted = [line for line in text.splitlines() if line.startswith("scim_requests_total{")]
    assert any('status="200"' in line and 'method="GET"' in line for line in counted), counted
    assert any('status="404"' in line for line in counted), counted
    assert "scim_request_seconds_bucket{" in text


async def test_rotation_old_and_new_tokens_work_and_a_removed_one_is_refused(
    database_url: str, tmp_path: Path
) -> None:
    old, new = new_token(), new_token()
    settings = scim_settings(database_url, scim_tokens=f"{new},{old}")
    async with running_stack(settings, tmp_path / "both") as stack:
        for token in (old, new):
            async with stack.client(token=token) as client:
                assert (await client.get("Users", params={"count": "1"})).status_code == 200
    # The old token removed: a restart with the new one only.
    rotated = make_settings(
        database_url,
        queue_name=settings.queue_name,
        scim_tokens=new,
        seal_keys=",".join(settings.seal_key_list),
        scim_port=free_port(),
    )
    async with running_stack(rotated, tmp_path / "new") as stack:
        async with stack.client(token=new) as client:
            assert (await client.get("Users", params={"count": "1"})).status_code == 200
        async with stack.client(token=old) as client:
            refused = await client.get("Users")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        async with httpx.AsyncClient(base_url=stack.base_url + "/") as anonymous:
            assert (await anonymous.get("Users")).status_code == 401
