"""The SCIM service's part of `python -m worker health`: GET <url>/healthz answers 200."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from worker.settings import Settings

_ANY_ADDRESS = {"0.0.0.0", "::", ""}  # noqa: S104 - a listening address, never one to connect to


def default_url(settings: Settings) -> str:
    """http://SCIM_HOST:SCIM_PORT; a server listening on every address is asked on the loopback."""
    host = "127.0.0.1" if settings.scim_host in _ANY_ADDRESS else settings.scim_host
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"http://{host}:{settings.scim_port}"


@dataclass(frozen=True)
class ScimHealth:
    """What the SCIM check found."""

    url: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        """For `health --json`."""
        return {"url": self.url, "ok": self.ok, "detail": self.detail}


def _shown(url: str) -> str:
    """`url` without any user:password part, for output."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _get(url: str, timeout: float) -> ScimHealth:
    target = url.rstrip("/") + "/healthz"
    shown = _shown(url)
    if urllib.parse.urlsplit(target).scheme not in {"http", "https"}:
        return ScimHealth(shown, False, "the SCIM URL must start with http:// or https://")
    try:
        with urllib.request.urlopen(target, timeout=timeout) as response:  # noqa: S310 - scheme checked
            status = int(response.status)
    except urllib.error.HTTPError as error:
        status = error.code
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return ScimHealth(shown, False, f"not reachable ({type(error).__name__}: {reason})")
    if status == 200:
        return ScimHealth(shown, True, "answers 200 on /healthz")
    return ScimHealth(shown, False, f"answers {status} on /healthz")


async def check_scim(url: str, *, within: float = 5.0) -> ScimHealth:
    """GET <url>/healthz; healthy only on 200."""
    return await asyncio.to_thread(_get, url, within)
