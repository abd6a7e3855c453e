"""Configuration, read from the environment and an optional `.env` file."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from arq.connections import RedisSettings
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

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
    redis_url: SecretStr = SecretStr(DEFAULT_REDIS_URL)
    sql_echo: bool = False
    db_pool_size: PositiveInt = 10
    db_max_overflow: Annotated[int, Field(ge=0)] = 5
    db_pool_timeout: Annotated[float, Field(gt=0)] = 5.0
    queue_name: Annotated[str, Field(min_length=1)] = "provisioning:queue"
    max_jobs: PositiveInt = 10
    job_timeout: PositiveInt = 10
    max_tries: PositiveInt = 10
    keep_result: Annotated[int, Field(ge=0)] = 3600
    health_check_interval: PositiveInt = 30
    poll_delay: Annotated[float, Field(gt=0)] = 0.5
    job_completion_wait: Annotated[int, Field(ge=0)] = 20
    retry_base_delay: Annotated[float, Field(gt=0)] = 1.0
    retry_max_delay: Annotated[float, Field(gt=0)] = 60.0
    startup_db_wait: Annotated[float, Field(ge=0)] = 30.0

    @field_validator("database_url")
    @classmethod
    def _postgres_asyncpg(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        try:
            driver = make_url(url).drivername
        except Exception:
            raise ValueError("DATABASE_URL is not a valid URL: expected postgresql+asyncpg://…") from None
        if driver == "postgresql" or driver == "postgres":
            # Accept the URL other tools use and pick the async driver we ship with.
            return SecretStr(str(make_url(url).set(drivername="postgresql+asyncpg").render_as_string(False)))
        if driver != "postgresql+asyncpg":
            raise ValueError(f"DATABASE_URL uses driver {driver!r}: use postgresql+asyncpg://…")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr) -> SecretStr:
        scheme = value.get_secret_value().partition("://")[0]
        if scheme not in {"redis", "rediss", "unix"}:
            raise ValueError(f"REDIS_URL uses scheme {scheme!r}: use redis://, rediss:// or unix://")
        return value

    @property
    def database_url_masked(self) -> str:
        """The database URL with its password hidden."""
        return mask_url(self.database_url.get_secret_value())

    @property
    def redis_url_masked(self) -> str:
        """The Redis URL with its password hidden."""
        return mask_url(self.redis_url.get_secret_value())

    @property
    def redis_settings(self) -> RedisSettings:
        """ARQ connection settings for `redis_url`."""
        return RedisSettings.from_dsn(self.redis_url.get_secret_value())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
