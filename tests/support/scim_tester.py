"""scim2-tester's client over real sockets with httpx, told what values our Users take.

scim2-client's network engine (`scim2_client.engines.httpx2`) is written for httpx2, which is not
one of our dependencies; `HttpxSCIMClient` is the same engine on httpx's `Client`, whose API it
mirrors.

scim2-tester fills the resources it creates with random values, except where a model's field
lists `examples` (scim2_tester.filling). A SCIM schema cannot say that our `userName` is an email
address or that a role is one of three words, so `discover_with_examples` builds the client's
models from what the server publishes (its /Schemas, /ResourceTypes, /ServiceProviderConfig),
then gives those two attributes examples that satisfy them. Nothing else is changed: every check
runs against the service as it describes itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
from scim2_client import BaseSyncSCIMClient
from scim2_client.errors import RequestNetworkException
from scim2_models import Path
from scim2_tester.utils import parametrize

from tests.support.ids import RUN_ID

ROLE_EXAMPLES = ["admin", "member", "viewer"]
# Enough that the few users one run creates never draw the same address (a 409 otherwise).
EMAIL_EXAMPLES = [f"tester-t{RUN_ID}-{uuid.uuid4().hex[:12]}@example.com" for _ in range(100_000)]


def discover_with_examples(client: BaseSyncSCIMClient) -> None:
    """Describe the server as it publishes itself, with examples for userName and roles.value."""
    client.discover()
    user = client.provider.model_for("User")
    assert user is not None, "the server publishes no User resource type"
    _give_examples(user, "userName", EMAIL_EXAMPLES)
    _give_examples(user, "roles.value", ROLE_EXAMPLES)


def _give_examples(model: type[Any], attribute: str, examples: Sequence[str]) -> None:
    binding = parametrize(Path, model)(attribute).resolve()
    if binding is None or binding.target_model is None:
        return  # the server does not publish the attribute: nothing will be filled in for it
    binding.target_model.model_fields[binding.target_field_name].examples = list(examples)


class HttpxSCIMClient(BaseSyncSCIMClient):
    """A synchronous SCIM client sending its requests with an `httpx.Client` (base URL and auth set)."""

    def __init__(self, client: httpx.Client, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client = client

    def _stays_under_base_url(self, endpoint: str) -> bool:
        base = self.client.base_url
        try:
            url = self.client.build_request("GET", endpoint).url
        except httpx.InvalidURL:
            return False
        return (
            url.scheme == base.scheme and url.netloc == base.netloc and url.raw_path.startswith(base.raw_path)
        )

    def _parse_json(self, response: Any) -> Any:
        return response.json()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send one request as is; a network failure becomes scim2-client's own error."""
        with _network_errors():
            return self.client.request(method, url, **kwargs)


@contextmanager
def _network_errors() -> Iterator[None]:
    try:
        yield
    except httpx.RequestError as error:
        raised = RequestNetworkException()
        raised.add_note(str(error))
        raise raised from error
