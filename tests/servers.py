"""Private servers for fault and infrastructure tests, on ports of their own, always stopped afterwards.

The shared PostgreSQL and Redis are never stopped, restarted or flushed by a test: a test that
needs to break or reconfigure a server starts its own here.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.tcp_proxy import free_port


def require(program: str, package: str) -> str:
    """The path of `program`; fails the test (never skips it) naming the install command."""
    path = shutil.which(program)
    if path is None:
        raise AssertionError(
            f"{program} is not installed: run `apt-get update && apt-get install -y {package}` "
            "(.ci/run does this in CI)"
        )
    return path


def wait_for_port(port: int, *, within: float = 15.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until something accepts connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server exited with status {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listened on port {port} within {within:g}s")


def terminate(process: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def pgbouncer(log_directory: Path, *, target_port: int = 5432, pool_size: int = 4) -> Iterator[int]:
    """PgBouncer in transaction pooling mode in front of 127.0.0.1:`target_port`; yields its port.

    Few server connections (`pool_size`) for many clients, so that consecutive transactions of one
    client land on different server connections, as under real load.
    """
    binary = require("pgbouncer", "pgbouncer")
    port = free_port()
    # PgBouncer refuses to run as root: it drops to the postgres user, who must reach its files,
    # so they live in a directory of their own under /tmp (pytest's are private to root).
    directory = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    shutil.chown(directory, "postgres")
    config = directory / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"* = host=127.0.0.1 port={target_port} user=postgres\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\n"
        "auth_type = any\npool_mode = transaction\n"
        f"max_client_conn = 1000\ndefault_pool_size = {pool_size}\n"
        "unix_socket_dir =\n"
        f"logfile = {directory / 'pgbouncer.log'}\n"
    )
    shutil.chown(config, "postgres")
    process = subprocess.Popen(
        [binary, "-u", "postgres", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, process=process)
        yield port
    finally:
        terminate(process)
        log_directory.mkdir(parents=True, exist_ok=True)
        if (directory / "pgbouncer.log").exists():
            shutil.copy(directory / "pgbouncer.log", log_directory / "pgbouncer.log")
        shutil.rmtree(directory, ignore_errors=True)


class PrivateRedis:
    """A redis-server of the test's own (append-only file on, fsync on every write), restartable."""

    def __init__(self, directory: Path, *extra: str) -> None:
        self.binary = require("redis-server", "redis-server")
        self.port = free_port()
        self.directory = directory
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """Its URL, database 0 (the whole server belongs to the test)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it (again, on the same port and data directory) and wait until it listens."""
        log = (self.directory / "redis.log").open("ab")
        try:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.directory),
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                    "--save",
                    "",
                    *self.extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()
        wait_for_port(self.port, process=self.process)

    def stop(self) -> None:
        """Shut it down (SIGTERM: it finishes writing the append-only file)."""
        if self.process is not None:
            terminate(self.process)
            self.process = None


@contextmanager
def private_redis(directory: Path, *extra: str) -> Iterator[PrivateRedis]:
    """A started `PrivateRedis`, stopped whatever happens."""
    server = PrivateRedis(directory, *extra)
    server.start()
    try:
        yield server
    finally:
        server.stop()
