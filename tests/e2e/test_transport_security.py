"""TLS from settings, against real TLS endpoints: Redis with TLS, and PostgreSQL behind a TLS front."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import make_url, text

from tests.support.ids import new_id
from tests.support.settings import make_settings
from tests.support.tcp_proxy import free_port
from tests.support.tls import Certificates, make_certificates
from worker.client import connect_redis
from worker.db.session import create_engine
from worker.settings import Settings

SSL_REQUEST = struct.pack("!ii", 8, 80877103)  # PostgreSQL's "SSLRequest" message


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path, dns_names=("localhost",))


@pytest.fixture
def tls_redis(certificates: Certificates, tmp_path: Path) -> Iterator[int]:
    """A redis-server of this test's own, speaking only TLS on a free port; shut down afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            str(certificates.cert),
            "--tls-key-file",
            str(certificates.key),
            "--tls-ca-cert-file",
            str(certificates.ca),
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(100):
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"redis-server would not start with TLS: {output[-500:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), 0.2),
            ):
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"redis-server (TLS) did not accept connections on port {port} within 100 tries")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def _tls_settings(database_url: str, redis_url: str, **values: object) -> Settings:
    return make_settings(database_url, redis_url=redis_url, **values)


async def _round_trip(settings: Settings) -> bytes | None:
    redis = await connect_redis(settings)
    try:
        key = new_id("tls")
        await redis.set(key, b"over tls", px=10_000)
        return cast("bytes | None", await redis.get(key))
    finally:
        await redis.aclose(close_connection_pool=True)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server to run with TLS")
async def test_rediss_verifies_the_certificate_and_the_host_name(
    database_url: str, certificates: Certificates, tls_redis: int
) -> None:
    trusted = _tls_settings(
        database_url, f"rediss://localhost:{tls_redis}/0", redis_ssl_ca_certs=certificates.ca
    )
    assert await _round_trip(trusted) == b"over tls"

    untrusted = _tls_settings(database_url, f"rediss://localhost:{tls_redis}/0")  # system CAs only
    with pytest.raises(Exception, match="certificate verify failed"):
        await _round_trip(untrusted)

    wrong_name = _tls_settings(
        database_url, f"rediss://127.0.0.1:{tls_redis}/0", redis_ssl_ca_certs=certificates.ca
    )
    with pytest.raises(Exception, match=r"IP address mismatch|hostname|doesn't match"):
        await _round_trip(wrong_name)
    unchecked = _tls_settings(
        database_url,
        f"rediss://127.0.0.1:{tls_redis}/0",
        redis_ssl_ca_certs=certificates.ca,
        redis_ssl_check_hostname=False,
    )
    assert await _round_trip(unchecked) == b"over tls"


class PostgresTlsFront:
    """Speaks PostgreSQL's TLS negotiation (SSLRequest → 'S' → handshake) and relays to the real server."""

    def __init__(self, certificates: Certificates, upstream_port: int) -> None:
        self.port = free_port()
        self.upstream_port = upstream_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certificates.cert, certificates.key)
        self.tls_sessions = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> PostgresTlsFront:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.readexactly(8)
        if first == SSL_REQUEST:
            writer.write(b"S")
            await writer.drain()
            await writer.start_tls(self.context)
            self.tls_sessions += 1
            first = b""
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        up_writer.write(first)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            with contextlib.suppress(Exception):
                sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
async def tls_front(certificates: Certificates, database_url: str) -> AsyncIterator[PostgresTlsFront]:
    async with PostgresTlsFront(certificates, make_url(database_url).port or 5432) as front:
        yield front


async def _select_one(settings: Settings) -> int:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(text("SELECT 1")) or 0)
    finally:
        await engine.dispose()


def _through(front: PostgresTlsFront, database_url: str, host: str = "localhost", query: str = "") -> str:
    url = make_url(database_url).set(host=host, port=front.port)
    return url.render_as_string(hide_password=False) + query


async def test_postgres_verify_full_checks_chain_and_host_name(
    database_url: str, certificates: Certificates, tls_front: PostgresTlsFront
) -> None:
    url = _through(tls_front, database_url)
    verified = make_settings(url, database_ssl_mode="verify-full", database_ssl_root_cert=certificates.ca)
    assert await _select_one(verified) == 1
    assert tls_front.tls_sessions >= 1

    unknown_ca = make_settings(url, database_ssl_mode="verify-full")  # system CAs: ours is not among them
    with pytest.raises(Exception, match="certificate verify failed"):
        await _select_one(unknown_ca)

    by_ip = _through(tls_front, database_url, host="127.0.0.1")
    with pytest.raises(Exception, match=r"IP address mismatch|hostname|doesn't match"):
        await _select_one(
            make_settings(by_ip, database_ssl_mode="verify-full", database_ssl_root_cert=certificates.ca)
        )
    assert (
        await _select_one(
            make_settings(by_ip, database_ssl_mode="verify-ca", database_ssl_root_cert=certificates.ca)
        )
        == 1
    )


async def test_postgres_sslmode_in_the_url_is_translated_for_asyncpg(
    database_url: str, tls_front: PostgresTlsFront
) -> None:
    settings = make_settings(_through(tls_front, database_url, query="?sslmode=require"))
    assert "ssl=require" in settings.database_url.get_secret_value()
    before = tls_front.tls_sessions
    assert await _select_one(settings) == 1  # encrypted, certificate not verified (libpq's "require")
    assert tls_front.tls_sessions > before
