"""Connecting to Redis: a plain URL through ARQ, or Redis Sentinel (`redis+sentinel://`) through ours.

`REDIS_URL=redis+sentinel://[user:password@]host:port[,host:port…]/service_name[/db]` names the
sentinels to ask for the current master of `service_name`; the credentials are the master's
(sentinels that require their own take REDIS_SENTINEL_PASSWORD). `rediss+sentinel://` uses TLS
to the master and the sentinels, with the same certificate checks as `rediss://`. After a failover
the pool asks the sentinels again, so the worker follows the new master without restarting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.jobs import Deserializer, Serializer
from redis.asyncio.sentinel import Sentinel

SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
"""Sentinel URL schemes, and whether each uses TLS."""


@dataclass(frozen=True)
class SentinelUrl:
    """The parts of a `redis+sentinel://` URL."""

    sentinels: list[tuple[str, int]]
    service: str
    database: int
    username: str | None
    password: str | None
    tls: bool


def is_sentinel_url(url: str) -> bool:
    """True for `redis+sentinel://` and `rediss+sentinel://`."""
    return url.partition("://")[0] in SENTINEL_SCHEMES


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Split a Sentinel URL; `ValueError` naming the expected shape (never the password)."""
    shape = "expected redis+sentinel://[user:password@]host:port[,host:port…]/service_name[/db]"
    scheme, _, rest = url.partition("://")
    if scheme not in SENTINEL_SCHEMES:
        raise ValueError(f"not a Sentinel URL: {shape}")
    location, _, path = rest.partition("/")
    userinfo, at, hosts = location.rpartition("@")
    if not at:
        userinfo, hosts = "", location
    username, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    sentinels = []
    for host in hosts.split(","):
        name, colon, port = host.rpartition(":")
        if not colon or not name or not port.isdigit():
            raise ValueError(f"REDIS_URL: sentinel address {host!r} has no host:port: {shape}")
        sentinels.append((name.strip("[]"), int(port)))
    parts = [part for part in path.split("/") if part]
    if not parts or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise ValueError(f"REDIS_URL: Sentinel URL names no service (or a bad db): {shape}")
    return SentinelUrl(
        sentinels=sentinels,
        service=unquote(parts[0]),
        database=int(parts[1]) if len(parts) == 2 else 0,
        username=unquote(username) or None,
        password=unquote(password) or None,
        tls=SENTINEL_SCHEMES[scheme],
    )


def mask_sentinel_url(url: str) -> str:
    """The URL with its password replaced by `***`."""
    scheme, _, rest = url.partition("://")
    location, slash, path = rest.partition("/")
    userinfo, at, hosts = location.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.partition(":")[0] + ":***"
    return f"{scheme}://{userinfo}{at}{hosts}{slash}{path}"


@dataclass
class SentinelSettings(RedisSettings):
    """ARQ's connection settings, for a master found through Redis Sentinel."""

    sentinel_password: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        hidden = {"password", "sentinel_password"}
        shown = ", ".join(
            f"{name}={'***' if name in hidden and value else value!r}" for name, value in vars(self).items()
        )
        return f"SentinelSettings({shown})"


def redis_settings_for(url: str, *, sentinel_password: str | None = None) -> RedisSettings:
    """ARQ's `RedisSettings` for a plain or a Sentinel URL."""
    if not is_sentinel_url(url):
        return RedisSettings.from_dsn(url)
    parts = parse_sentinel_url(url)
    return SentinelSettings(
        host=parts.sentinels,  # ARQ's word for the sentinels' addresses
        sentinel=True,
        sentinel_master=parts.service,
        database=parts.database,
        username=parts.username,
        password=parts.password,
        ssl=parts.tls,
        sentinel_password=sentinel_password,
    )


async def open_redis(
    settings: RedisSettings,
    *,
    job_serializer: Serializer | None,
    job_deserializer: Deserializer | None,
    default_queue_name: str,
    expires_extra_ms: int | None = None,
    retry: int = 0,
) -> ArqRedis:
    """An `ArqRedis` for `settings`: ARQ's own pool, or one that follows Sentinel's master."""
    extra: dict[str, Any] = {} if expires_extra_ms is None else {"expires_extra_ms": expires_extra_ms}
    if not isinstance(settings, SentinelSettings):
        return await create_pool(
            settings,
            retry=retry,
            job_serializer=job_serializer,
            job_deserializer=job_deserializer,
            default_queue_name=default_queue_name,
            **extra,
        )
    tls = _tls_options(settings)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        settings.host,
        sentinel_kwargs={
            "password": settings.sentinel_password,
            "socket_connect_timeout": settings.conn_timeout,
            **tls,
        },
        socket_connect_timeout=settings.conn_timeout,
        **tls,
    )
    redis = sentinel.master_for(
        settings.sentinel_master,
        redis_class=ArqRedis,
        db=settings.database,
        username=settings.username,
        password=settings.password,
    )
    assert isinstance(redis, ArqRedis)
    redis.job_serializer = job_serializer
    redis.job_deserializer = job_deserializer
    redis.default_queue_name = default_queue_name
    if expires_extra_ms is not None:
        redis.expires_extra_ms = expires_extra_ms
    await redis.ping()  # fails now, like ARQ's pool, if no sentinel knows a master
    return redis


def _tls_options(settings: RedisSettings) -> dict[str, Any]:
    if not settings.ssl:
        return {}
    return {
        "ssl": True,
        "ssl_cert_reqs": settings.ssl_cert_reqs,
        "ssl_ca_certs": settings.ssl_ca_certs,
        "ssl_check_hostname": settings.ssl_check_hostname,
    }
