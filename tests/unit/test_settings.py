"""Settings: defaults, environment, and URLs that never print their password."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from worker.redis_connection import SentinelSettings
from worker.settings import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, Settings, mask_url


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "SQL_ECHO",
        "MAX_JOBS",
        "QUEUE_NAME",
        "JOB_TIMEOUT",
        "MAX_TRIES",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = _settings()
    assert settings.database_url.get_secret_value() == DEFAULT_DATABASE_URL
    assert settings.redis_url.get_secret_value() == DEFAULT_REDIS_URL
    assert settings.sql_echo is False
    assert (settings.max_jobs, settings.job_timeout, settings.max_tries, settings.poll_delay) == (
        100,
        10,
        10,
        0.002,
    )


def test_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://app:pw@db:5432/prov")
    monkeypatch.setenv("REDIS_URL", "redis://:redispw@cache:6380/2")
    monkeypatch.setenv("SQL_ECHO", "true")
    monkeypatch.setenv("MAX_JOBS", "25")
    monkeypatch.setenv("QUEUE_NAME", "hr:queue")
    settings = _settings()
    assert settings.sql_echo is True
    assert (settings.max_jobs, settings.queue_name) == (25, "hr:queue")
    redis = settings.redis_settings
    assert (redis.host, redis.port, redis.database, redis.password) == ("cache", 6380, 2, "redispw")


def test_read_from_a_dotenv_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAX_TRIES", raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("MAX_TRIES=9\n")
    assert Settings(_env_file=env_file).max_tries == 9


def test_secrets_are_masked_everywhere_they_print() -> None:
    settings = _settings(
        database_url="postgresql+asyncpg://app:db-secret@db/prov", redis_url="redis://:redis-secret@r/0"
    )
    for text in (str(settings), repr(settings), settings.database_url_masked, settings.redis_url_masked):
        assert "db-secret" not in text
        assert "redis-secret" not in text
    assert settings.database_url_masked == "postgresql+asyncpg://app:***@db/prov"
    assert settings.redis_url_masked == "redis://:***@r/0"


def test_a_plain_postgresql_url_gets_the_async_driver() -> None:
    settings = _settings(database_url="postgresql://app:pw@db/prov")
    assert settings.database_url.get_secret_value() == "postgresql+asyncpg://app:pw@db/prov"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "database_url",
            "mysql://u:hush-pw@y/z",
            r"DATABASE_URL uses driver 'mysql': use postgresql\+asyncpg://",
        ),
        ("redis_url", "http://:hush-pw@cache", "REDIS_URL uses scheme 'http'"),
        ("max_jobs", 0, "greater than 0"),
        ("hash_nice", 20, "less than or equal to 19"),
        ("hash_jobs", -1, "greater than or equal to 0"),
    ],
)
def test_bad_values_are_refused_clearly(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as error:
        _settings(**{field: value})
    assert "hush-pw" not in str(error.value)


def test_sealed_password_jobs_held_default_to_two_per_hashing_thread_and_0_means_max_jobs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HASH_JOBS", "HASH_NICE"):
        monkeypatch.delenv(name, raising=False)
    assert _settings(hash_threads=3).hashing_job_limit == 6
    assert _settings(hash_threads=3, hash_jobs=5).hashing_job_limit == 5
    assert _settings(hash_jobs=0, max_jobs=40).hashing_job_limit == 40  # as before issue 20
    assert _settings().hash_nice == 19


def test_mask_url_never_returns_a_password() -> None:
    assert mask_url("redis://user:pw@host:1/0") == "redis://user:***@host:1/0"
    assert mask_url("not a url :// pw") == "<unparseable URL>"


def test_migrations_refuse_a_transaction_pooler_without_a_direct_url() -> None:
    pooled = Settings(_env_file=None, database_pooler="pgbouncer")
    with pytest.raises(ValueError, match="set MIGRATION_DATABASE_URL to a direct PostgreSQL URL"):
        _ = pooled.migration_url
    direct = Settings(
        _env_file=None, database_pooler="pgbouncer", migration_database_url="postgresql://u:secret@db:5432/p"
    )
    assert direct.migration_url == "postgresql+asyncpg://u:secret@db:5432/p"
    assert Settings(_env_file=None).migration_url == Settings(_env_file=None).database_url.get_secret_value()


def test_tombstones_must_outlive_failure_records() -> None:
    with pytest.raises(ValueError, match=r"TOMBSTONE_RETENTION .* must be longer than FAILED_JOB_RETENTION"):
        Settings(_env_file=None, tombstone_retention=3600, failed_job_retention=7200)


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_db() -> None:
    settings = Settings(
        _env_file=None,
        redis_url="rediss+sentinel://app:s3cret@10.0.0.1:26379,[::1]:26380/queue-master/2",
        redis_sentinel_password="sentinel-pw",
    )
    redis = settings.redis_settings
    assert isinstance(redis, SentinelSettings)
    assert (redis.host, redis.sentinel_master, redis.database) == (
        [("10.0.0.1", 26379), ("::1", 26380)],
        "queue-master",
        2,
    )
    assert (redis.username, redis.password, redis.sentinel_password) == ("app", "s3cret", "sentinel-pw")
    assert (redis.ssl, redis.ssl_cert_reqs, redis.ssl_check_hostname) == (True, "required", True)
    assert settings.redis_url_masked == "rediss+sentinel://app:***@10.0.0.1:26379,[::1]:26380/queue-master/2"
    assert "s3cret" not in repr(redis)
    assert "sentinel-pw" not in repr(redis)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://127.0.0.1/mymaster", "sentinel address '127.0.0.1' has no host:port"),
        ("redis+sentinel://127.0.0.1:26379", "names no service"),
        ("redis+sentinel://127.0.0.1:26379/mymaster/x", "names no service (or a bad db)"),
        (
            "sentinel://127.0.0.1:26379/mymaster",
            "or redis+sentinel:// (rediss+sentinel://) for Redis Sentinel",
        ),
    ],
)
def test_a_bad_sentinel_url_says_what_shape_is_expected(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Settings(_env_file=None, redis_url=url)
