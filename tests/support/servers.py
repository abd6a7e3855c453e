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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.tcp_proxy import free_port


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


class PrivateSentinel:
    """A master, a replica and one sentinel watching them as `mymaster`: a failover in miniature."""

    SERVICE = "mymaster"

    def __init__(
        self, directory: Path, *, password: str | None = None, sentinel_password: str | None = None
    ) -> None:
        """`password` protects the master and the replica, `sentinel_password` the sentinel."""
        auth = ("--requirepass", password, "--masterauth", password) if password else ()
        self.master = PrivateRedis(directory / "master", *auth)
        self.replica = PrivateRedis(
            directory / "replica", "--replicaof", "127.0.0.1", str(self.master.port), *auth
        )
        self.password = password
        self.sentinel_password = sentinel_password
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The Sentinel URL a worker and a client take as REDIS_URL."""
        credentials = f":{self.password}@" if self.password else ""
        return f"redis+sentinel://{credentials}127.0.0.1:{self.port}/{self.SERVICE}"

    def start(self) -> None:
        """Start the master, the replica (in sync) and the sentinel (watching the master)."""
        self.master.start()
        self.replica.start()
        wait_for(
            lambda: (
                "master_link_status:up"
                in _redis_cli(self.replica.port, "INFO", "replication", password=self.password)
            ),
            what="the replica's sync",
        )
        config = self.directory / "sentinel.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n"
            f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {self.SERVICE} 1000\n"
            f"sentinel failover-timeout {self.SERVICE} 5000\n"
            + (f"sentinel auth-pass {self.SERVICE} {self.password}\n" if self.password else "")
            + (f"requirepass {self.sentinel_password}\n" if self.sentinel_password else "")
        )
        log = (self.directory / "sentinel.log").open("ab")
        try:
            self.process = subprocess.Popen(
                [self.master.binary, str(config), "--sentinel"], stdout=log, stderr=subprocess.STDOUT
            )
        finally:
            log.close()
        wait_for_port(self.port, process=self.process)

    def master_port(self) -> int:
        """The port of the master the sentinel currently names."""
        reply = _redis_cli(
            self.port, "SENTINEL", "get-master-addr-by-name", self.SERVICE, password=self.sentinel_password
        ).split()
        return int(reply[1])

    def kill_master(self) -> None:
        """SIGKILL the master: no shutdown, no last write."""
        assert self.master.process is not None
        self.master.process.kill()
        self.master.process.wait()
        self.master.process = None

    def stop(self) -> None:
        """Stop all three."""
        if self.process is not None:
            terminate(self.process)
            self.process = None
        self.replica.stop()
        self.master.stop()


def _redis_cli(port: int, *command: str, password: str | None = None) -> str:
    auth = ("-a", password, "--no-auth-warning") if password else ()
    done = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *auth, *command],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return done.stdout


def wait_for(condition: Callable[[], bool], *, what: str, within: float = 30.0) -> None:
    """Poll `condition` until it holds; fail naming `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {within:g}s waiting for {what}")
        time.sleep(0.1)


@contextmanager
def private_sentinel(directory: Path, **passwords: str) -> Iterator[PrivateSentinel]:
    """A started `PrivateSentinel`, stopped whatever happens."""
    setup = PrivateSentinel(directory, **passwords)
    try:
        setup.start()
        yield setup
    finally:
        setup.stop()


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (initdb in a temporary directory, trust auth): one a
    test may restart, leaving the shared cluster alone."""

    def __init__(self) -> None:
        # Debian keeps the server programs out of PATH, under /usr/lib/postgresql/<version>/bin.
        versioned = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        self.bin = versioned[-1].parent if versioned else Path(require("initdb", "postgresql")).parent
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="postgres-"))
        shutil.chown(self.directory, "postgres")
        self.data = self.directory / "data"

    @property
    def admin_url(self) -> str:
        """Its `postgres` database, for creating others."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *command: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, timeout=120
        )

    def init(self) -> None:
        """Create the cluster and start it."""
        self._as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self.start()

    def _pg_ctl(self, action: str, *extra: str) -> None:
        self._as_postgres(
            str(self.bin / "pg_ctl"),
            action,
            "-D",
            str(self.data),
            "-w",
            "-l",
            str(self.directory / "postgres.log"),
            "-o",
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory}",
            *extra,
        )

    def start(self) -> None:
        """Start it and wait until it accepts connections."""
        self._pg_ctl("start")
        wait_for_port(self.port)

    def restart(self) -> None:
        """A fast restart: connections are cut, transactions in flight are rolled back."""
        self._pg_ctl("restart", "-m", "fast")
        wait_for_port(self.port)

    def stop(self) -> None:
        """Stop it (immediate: nothing of it is kept) and remove its files."""
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A running `PrivatePostgres`, stopped and removed whatever happens."""
    cluster = PrivatePostgres()
    try:
        cluster.init()
        yield cluster
    finally:
        cluster.stop()
