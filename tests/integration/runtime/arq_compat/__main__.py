"""`make test-arq-compat`: ARQ's own test suite, from the sdist of the pinned ARQ, against our worker.

1. Downloads the sdist of the ARQ version in requirements.lock (it contains `tests/`).
2. Builds a venv with our pinned runtime, this project, and the test tools ARQ's lock file pins.
3. Replaces the suite's testcontainers fixtures with a private redis-server on a port of its own
   (the suite calls FLUSHALL: it must never see the shared Redis), and runs test_worker.py,
   test_jobs.py, test_main.py and test_cron.py with `-p tests.integration.runtime.arq_compat.plugin`,
   which makes `arq.worker.Worker` our `ProvisioningWorker`.
Exits with pytest's status. Everything lives under .arq-compat/ (git-ignored).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from tests.support.servers import private_redis

ROOT = Path(__file__).resolve().parents[4]
WORK = ROOT / ".arq-compat"
VENV = WORK / "venv"
SUITE = ("test_worker.py", "test_jobs.py", "test_main.py", "test_cron.py")
# What ARQ's own lock file pins for its tests (ARQ's lock pins redis 4.6, whose deprecation warnings
# differ from the redis we run: warnings are therefore not turned into errors).
TEST_TOOLS = (
    "pytest==8.4.2",
    "pytest-asyncio==0.23.6",
    "pytest-mock==3.15.1",
    "dirty-equals==0.11",
    "pytest-timeout==2.4.0",
    "msgpack",
)
CONTAINER_FIXTURES = re.compile(
    r"@pytest\.fixture\(scope='session'\)\ndef redis_container\(.*?"
    r"def test_redis_port\(redis_container: RedisContainer\) -> int:\n    return [^\n]*\n",
    re.DOTALL,
)
PRIVATE_FIXTURES = """@pytest.fixture(scope='session')
def test_redis_host() -> str:
    return '127.0.0.1'


@pytest.fixture(scope='session')
def test_redis_port() -> int:
    return int(os.environ['ARQ_COMPAT_REDIS_PORT'])  # a private redis-server (arq_compat)
"""


def pinned_arq() -> str:
    """The ARQ version requirements.lock pins."""
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.lower().startswith("arq=="):
            return line.split("==", 1)[1].strip()
    raise SystemExit("requirements.lock pins no arq version")


def run(*command: str | Path) -> None:
    subprocess.run([str(part) for part in command], check=True, cwd=ROOT)


def fetch_suite(version: str) -> Path:
    """ARQ's tests/ from the sdist of `version`, with the container fixtures replaced."""
    downloads = WORK / "sdist"
    downloads.mkdir(parents=True, exist_ok=True)
    sdist = downloads / f"arq-{version}.tar.gz"
    if not sdist.exists():
        run(
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"arq=={version}",
            "-d",
            downloads,
        )
    suite = WORK / f"arq-{version}-tests"
    shutil.rmtree(suite, ignore_errors=True)
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if f"arq-{version}/tests/" in m.name and m.isfile()]
        archive.extractall(WORK / "extract", members=members, filter="data")
    shutil.move(WORK / "extract" / f"arq-{version}" / "tests", suite)
    shutil.rmtree(WORK / "extract")
    conftest = suite / "conftest.py"
    text = conftest.read_text()
    patched, count = CONTAINER_FIXTURES.subn(PRIVATE_FIXTURES, text)
    if count != 1 or "from testcontainers.redis import RedisContainer\n" not in patched:
        raise SystemExit(
            f"{conftest}: the testcontainers fixtures are not where expected; update this runner"
        )
    conftest.write_text(patched.replace("from testcontainers.redis import RedisContainer\n", ""))
    return suite


def build_venv() -> Path:
    """A venv with our pinned runtime, this project and ARQ's test tools (built once)."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    inputs = (ROOT / "requirements.lock").read_text() + "\n".join(TEST_TOOLS)
    if stamp.exists() and stamp.read_text() == inputs:
        return python
    shutil.rmtree(VENV, ignore_errors=True)
    run(sys.executable, "-m", "venv", VENV)
    run(python, "-m", "pip", "install", "--quiet", "-r", ROOT / "requirements.lock", *TEST_TOOLS)
    run(python, "-m", "pip", "install", "--quiet", "--no-deps", "-e", ROOT)
    stamp.write_text(inputs)
    return python


def main() -> int:
    """Run the suite; pytest's exit status."""
    suite = fetch_suite(pinned_arq())
    python = build_venv()
    with private_redis(WORK / "redis") as redis:
        env = {**os.environ, "ARQ_COMPAT_REDIS_PORT": str(redis.port), "PYTHONPATH": str(ROOT)}
        command = [
            str(python),
            "-m",
            "pytest",
            "-p",
            "tests.integration.runtime.arq_compat.plugin",
            "-o",
            "filterwarnings=ignore",
            "-o",
            "asyncio_mode=auto",
            "-o",
            "timeout=10",
            "--rootdir",
            str(suite),
            "-c",
            os.devnull,
            "-q",
            *(str(suite / name) for name in SUITE),
        ]
        return subprocess.run(command, cwd=suite.parent, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
