"""Configuration, read from the environment and an optional `.env` file."""

from __future__ import annotations

import os
import ssl
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from arq.connections import RedisSettings
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from worker.passwords.policy import MIN_MEMORY_KIB, MIN_PARALLELISM, MIN_TIME_COST, PasswordPolicy
from worker.redis_connection import (
    is_sentinel_url,
    mask_sentinel_url,
    parse_sentinel_url,
    redis_settings_for,
)

DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres:postgres@127.0.0.1:5432/provisioning"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

PositiveInt = Annotated[int, Field(gt=0)]


def mask_url(url: str) -> str:
    """Return `url` with any password replaced by `***`, safe to log or print."""
    try:
        parsed = make_url(url)
    except Exception:  # not a URL we can parse: show nothing of it rather than risk a secret
        return "<unparseable URL>"
    return parsed.render_as_string(hide_password=True)


class Settings(BaseSettings):
    """Worker settings; URLs are secrets and print masked."""

    # hide_input_in_errors: a bad DATABASE_URL must not put its password into the error text.
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", hide_input_in_errors=True
    )

    database_url: SecretStr = SecretStr(DEFAULT_DATABASE_URL)
    # "pgbouncer": DATABASE_URL goes through a transaction pooler (see README "Operating at scale").
    database_pooler: Literal["none", "pgbouncer"] = "none"
    # A direct connection for `make db-migrate` when DATABASE_URL goes through a pooler.
    migration_database_url: SecretStr | None = None
    redis_url: SecretStr = SecretStr(DEFAULT_REDIS_URL)
    # Sentinels that require a password of their own (REDIS_URL's credentials are the master's).
    redis_sentinel_password: SecretStr | None = None
    # Seconds Redis may stay unreachable (also at start-up) before the worker exits with status 1.
    redis_max_outage: Annotated[float, Field(gt=0)] = 300.0
    # Seconds the client and the CLI keep retrying an enqueue while Redis is unreachable.
    enqueue_retry_for: Annotated[float, Field(ge=0)] = 30.0
    sql_echo: bool = False
    db_pool_size: PositiveInt = 20
    db_max_overflow: Annotated[int, Field(ge=0)] = 10
    db_pool_timeout: Annotated[float, Field(gt=0)] = 5.0
    db_pool_warm: Annotated[int, Field(ge=0)] = 4
    queue_name: Annotated[str, Field(min_length=1)] = "provisioning:queue"
    max_jobs: PositiveInt = 100
    job_timeout: PositiveInt = 10
    max_tries: PositiveInt = 10
    keep_result: Annotated[int, Field(ge=0)] = 3600
    failed_job_retention: PositiveInt = 7 * 24 * 3600
    health_check_interval: PositiveInt = 5
    poll_delay: Annotated[float, Field(gt=0)] = 0.002
    queue_read_limit: PositiveInt | None = None
    job_completion_wait: Annotated[int, Field(ge=0)] = 20
    retry_base_delay: Annotated[float, Field(gt=0)] = 1.0
    retry_max_delay: Annotated[float, Field(gt=0)] = 60.0
    startup_db_wait: Annotated[float, Field(ge=0)] = 30.0
    group_commit: bool = True
    group_commit_window: Annotated[float, Field(ge=0, le=1)] = 0.01
    metrics_port: Annotated[int, Field(gt=0, lt=65536)] | None = None
    log_format: Literal["auto", "json", "console", "off"] = "auto"
    bulk_max_batch: Annotated[int, Field(gt=0, le=10_000)] = 1000
    bulk_concurrency: PositiveInt = 4

    # Ordering (docs/jobs.md): stamps further ahead than this are refused (a bad clock), and so are
    # stamps older than TOMBSTONE_RETENTION, which is how long deletes' tombstones are kept.
    max_clock_skew: Annotated[float, Field(ge=0)] = 300.0
    tombstone_retention: PositiveInt = 30 * 24 * 3600
    intent_window: PositiveInt = 3600
    audit_retention: PositiveInt = 365 * 24 * 3600

    # Sealed passwords: comma-separated Fernet keys; the first seals, all open (rotation).
    seal_keys: SecretStr | None = None
    seal_max_age: PositiveInt = 2 * 24 * 3600
    # Erasure (README, "Erasure"): comma-separated secrets, the current one first, then the previous;
    # `erase` keeps an erased person's newest stamp under an HMAC of the identity key with them.
    erasure_keys: SecretStr | None = None
    # Hashing done by the worker: argon2id, never below OWASP's minimum; a thread per core.
    argon2_memory_kib: Annotated[int, Field(ge=MIN_MEMORY_KIB)] = MIN_MEMORY_KIB
    argon2_time_cost: Annotated[int, Field(ge=MIN_TIME_COST)] = MIN_TIME_COST
    argon2_parallelism: Annotated[int, Field(ge=MIN_PARALLELISM)] = MIN_PARALLELISM
    hash_threads: PositiveInt | None = None
    # Cheap jobs first (docs/performance.md, "Password hashing pool"): sealed-password jobs one
    # worker holds at once (default twice the hashing threads; 0: up to MAX_JOBS), and how much
    # lower the hashing threads' CPU priority is (a Linux nice increment; 0: the worker's own).
    hash_jobs: Annotated[int, Field(ge=0)] | None = None
    hash_nice: Annotated[int, Field(ge=0, le=19)] = 19

    # The SCIM 2.0 service (`python -m worker scim`; README, "SCIM"). SCIM_TOKENS: comma-separated
    # bearer tokens, several while rotating; the service refuses to start without one.
    scim_host: str = "127.0.0.1"
    scim_port: Annotated[int, Field(gt=0, lt=65536)] = 8080
    scim_tokens: SecretStr | None = None
    scim_default_role: Literal["admin", "member", "viewer"] = "member"
    # Seconds a request waits for its jobs' results before answering 503 (the jobs still apply).
    scim_job_wait: Annotated[float, Field(gt=0)] = 10.0
    scim_max_body: PositiveInt = 1024 * 1024

    # Transport security (see README "Security").
    database_ssl_mode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] | None = None
    database_ssl_root_cert: Path | None = None
    redis_ssl_ca_certs: Path | None = None
    redis_ssl_check_hostname: bool = True

    @field_validator("database_url")
    @classmethod
    def _postgres_asyncpg(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        try:
            driver = make_url(url).drivername
        except Exception:
            raise ValueError("DATABASE_URL is not a valid URL: expected postgresql+asyncpg://…") from None
        if driver not in {"postgresql", "postgres", "postgresql+asyncpg"}:
            raise ValueError(f"DATABASE_URL uses driver {driver!r}: use postgresql+asyncpg://…")
        parsed = make_url(url).set(drivername="postgresql+asyncpg")  # the async driver we ship with
        if "sslmode" in parsed.query:
            # libpq spelling, which asyncpg rejects: translate it to asyncpg's `ssl`.
            query = dict(parsed.query)
            query["ssl"] = query.pop("sslmode")
            parsed = parsed.set(query=query)
        return SecretStr(parsed.render_as_string(hide_password=False))

    @field_validator("migration_database_url")
    @classmethod
    def _migration_postgres_asyncpg(cls, value: SecretStr | None) -> SecretStr | None:
        return None if value is None else cls._postgres_asyncpg(value)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        scheme = url.partition("://")[0]
        if is_sentinel_url(url):
            parse_sentinel_url(url)  # its ValueError says what shape is expected
        elif scheme not in {"redis", "rediss", "unix"}:
            raise ValueError(
                f"REDIS_URL uses scheme {scheme!r}: use redis://, rediss://, unix://, "
                "or redis+sentinel:// (rediss+sentinel://) for Redis Sentinel"
            )
        return value

    @field_validator("seal_keys")
    @classmethod
    def _fernet_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        from cryptography.fernet import Fernet

        for position, key in enumerate(_split_keys(value), start=1):
            try:
                Fernet(key.encode())
            except ValueError:
                raise ValueError(
                    f"SEAL_KEYS key #{position} is not a Fernet key (32 bytes, URL-safe base64): "
                    "make one with `python -m worker new-seal-key`"
                ) from None
        return value

    @field_validator("erasure_keys")
    @classmethod
    def _erasure_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        keys = _split_keys(value)
        if len(keys) > 2:
            raise ValueError("ERASURE_KEYS holds at most 2 keys: the current one, then the previous one")
        for position, key in enumerate(keys, start=1):
            if len(key) < 32:
                raise ValueError(
                    f"ERASURE_KEYS key #{position} is shorter than 32 characters: make one with "
                    "`python -m worker new-seal-key` (any 32+ random characters will do)"
                )
        return value

    @model_validator(mode="after")
    def _tombstones_outlive_failures(self) -> Settings:
        if self.tombstone_retention <= self.failed_job_retention:
            raise ValueError(
                f"TOMBSTONE_RETENTION ({self.tombstone_retention}s) must be longer than FAILED_JOB_RETENTION "
                f"({self.failed_job_retention}s), or `python -m worker retry` would send refused stamps"
            )
        return self

    @property
    def seal_key_list(self) -> list[str]:
        """The sealing keys, primary first (empty if none are configured)."""
        return _split_keys(self.seal_keys) if self.seal_keys is not None else []

    @property
    def erasure_key_list(self) -> list[str]:
        """The erasure keys, current first (empty if none are configured)."""
        return _split_keys(self.erasure_keys) if self.erasure_keys is not None else []

    @property
    def scim_token_list(self) -> list[str]:
        """The SCIM bearer tokens (empty if none are configured)."""
        return _split_keys(self.scim_tokens) if self.scim_tokens is not None else []

    @property
    def password_policy(self) -> PasswordPolicy:
        """The argon2id parameters the worker hashes with."""
        return PasswordPolicy(self.argon2_memory_kib, self.argon2_time_cost, self.argon2_parallelism)

    @property
    def hashing_threads(self) -> int:
        """Threads for password hashing: HASH_THREADS, or one per core."""
        return self.hash_threads or os.cpu_count() or 1

    @property
    def hashing_job_limit(self) -> int:
        """Sealed-password jobs one worker holds at once: HASH_JOBS (0: MAX_JOBS), or 2 per hashing thread."""
        if self.hash_jobs is None:
            return 2 * self.hashing_threads
        return self.hash_jobs or self.max_jobs

    @property
    def database_connect_args(self) -> dict[str, Any]:
        """asyncpg connect arguments for DATABASE_SSL_MODE / DATABASE_SSL_ROOT_CERT."""
        mode = self.database_ssl_mode
        if mode is None:
            return {}
        if mode in {"verify-ca", "verify-full"}:
            context = ssl.create_default_context(
                cafile=str(self.database_ssl_root_cert) if self.database_ssl_root_cert else None
            )
            context.check_hostname = mode == "verify-full"
            return {"ssl": context}
        return {"ssl": mode}

    @property
    def migration_url(self) -> str:
        """Where migrations run: MIGRATION_DATABASE_URL, else DATABASE_URL unless that is a pooler."""
        if self.migration_database_url is not None:
            return self.migration_database_url.get_secret_value()
        if self.database_pooler != "none":
            raise ValueError(
                "DATABASE_URL goes through a transaction pooler "
                f"(DATABASE_POOLER={self.database_pooler}), and migrations need one server session for "
                "their lock and DDL: set MIGRATION_DATABASE_URL to a direct PostgreSQL URL, then run "
                "`make db-migrate` again"
            )
        return self.database_url.get_secret_value()

    @property
    def database_url_masked(self) -> str:
        """The database URL with its password hidden."""
        return mask_url(self.database_url.get_secret_value())

    @property
    def redis_url_masked(self) -> str:
        """The Redis URL with its password hidden."""
        url = self.redis_url.get_secret_value()
        return mask_sentinel_url(url) if is_sentinel_url(url) else mask_url(url)

    @property
    def redis_settings(self) -> RedisSettings:
        """ARQ connection settings for `redis_url`; TLS (`rediss`) verifies the server's certificate."""
        password = self.redis_sentinel_password
        redis = redis_settings_for(
            self.redis_url.get_secret_value(),
            sentinel_password=password.get_secret_value() if password is not None else None,
        )
        if redis.ssl:
            redis.ssl_cert_reqs = "required"
            redis.ssl_check_hostname = self.redis_ssl_check_hostname
            if self.redis_ssl_ca_certs is not None:
                redis.ssl_ca_certs = str(self.redis_ssl_ca_certs)
        return redis


def _split_keys(value: SecretStr) -> list[str]:
    return [key.strip() for key in value.get_secret_value().split(",") if key.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
