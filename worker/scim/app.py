"""The Starlette application: routes under /scim/v2, /healthz, middleware, and the lifespan that
builds the database engine and a `ProvisioningClient` on its own Redis pool (nothing at import)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TypeVar

from scim2_models import ResourceType, Schema
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from worker import tracing
from worker.client import ProvisioningClient
from worker.db.session import create_engine, create_session_factory
from worker.scim import BASE_PATH, discovery, health, users
from worker.scim.auth import Tokens
from worker.scim.errors import ScimError, error_response
from worker.scim.middleware import ObserveRequests, RequireToken
from worker.scim.responses import scim_response
from worker.scim.service import ScimService, service_of
from worker.settings import Settings

logger = logging.getLogger("worker.scim")

ClientFactory = Callable[[Settings], AbstractAsyncContextManager[ProvisioningClient]]
"""Opens the client the service enqueues with (default: `ProvisioningClient.connect`)."""


def create_app(settings: Settings, *, client_factory: ClientFactory | None = None) -> Starlette:
    """The SCIM application for `settings`; ValueError without SCIM_TOKENS (refuses to start)."""
    tokens = Tokens(settings.scim_token_list)
    open_client: ClientFactory = client_factory or ProvisioningClient.connect

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tracing.configure(tracing.SCIM_SERVICE)  # when OTEL_* turns it on: requests, and the jobs they send
        engine = create_engine(settings, reads_only=True)  # it writes only through jobs
        try:
            async with open_client(settings) as client:
                app.state.service = ScimService(settings, engine, create_session_factory(engine), client)
                yield
        finally:
            await engine.dispose()
            tracing.shutdown()

    return Starlette(
        routes=_routes(),
        middleware=[Middleware(ObserveRequests), Middleware(RequireToken, tokens=tokens)],
        exception_handlers={ScimError: _scim_error, HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )


def _routes() -> list[Route]:
    base = BASE_PATH
    return [
        Route("/healthz", _healthz, methods=["GET"]),
        Route(f"{base}/Users", users.list_users, methods=["GET"]),
        Route(f"{base}/Users", users.create_user, methods=["POST"]),
        Route(f"{base}/Users/.search", _not_implemented, methods=["POST"]),
        Route(f"{base}/Users/{{user_id}}", users.get_user, methods=["GET"]),
        Route(f"{base}/Users/{{user_id}}", users.replace_user, methods=["PUT"]),
        Route(f"{base}/Users/{{user_id}}", users.patch_user, methods=["PATCH"]),
        Route(f"{base}/Users/{{user_id}}", users.delete_user, methods=["DELETE"]),
        Route(f"{base}/ServiceProviderConfig", _service_provider_config, methods=["GET"]),
        Route(f"{base}/ResourceTypes", _resource_types, methods=["GET"]),
        Route(f"{base}/ResourceTypes/{{name}}", _resource_type, methods=["GET"]),
        Route(f"{base}/Schemas", _schemas, methods=["GET"]),
        Route(f"{base}/Schemas/{{schema_id}}", _schema, methods=["GET"]),
        Route(f"{base}/.search", _not_implemented, methods=["POST"]),
        Route(f"{base}/Bulk", _not_implemented, methods=["POST"]),
        Route(f"{base}/Me", _not_implemented, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route(f"{base}/Groups", _no_groups, methods=["GET", "POST"]),
        Route(f"{base}/Groups/{{rest:path}}", _no_groups, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]


async def _healthz(request: Request) -> Response:
    service = service_of(request)
    found = await health.check(service.engine, service.client)
    return JSONResponse(found, status_code=200 if found["ok"] else 503)


async def _service_provider_config(request: Request) -> Response:
    return scim_response(discovery.service_provider_config(str(request.base_url)))


ItemT = TypeVar("ItemT", ResourceType, Schema)
Endpoint = Callable[[Request], Awaitable[Response]]


def _discovery(
    documents: Callable[[str], list[ItemT]], id_param: str, missing: str
) -> tuple[Endpoint, Endpoint]:
    """The endpoints of a discovery collection: all of its documents, and one by id (404 if none)."""

    async def listed(request: Request) -> Response:
        return scim_response(discovery.listed(documents(str(request.base_url))))

    async def one(request: Request) -> Response:
        wanted = request.path_params[id_param]
        found = next((item for item in documents(str(request.base_url)) if item.id == wanted), None)
        if found is None:
            raise ScimError(404, missing)
        return scim_response(discovery.one(found))

    return listed, one


_resource_types, _resource_type = _discovery(
    discovery.resource_types, "name", "no such resource type: this service serves User"
)
_schemas, _schema = _discovery(discovery.schemas, "schema_id", "no such schema")


async def _not_implemented(request: Request) -> Response:
    raise ScimError(501, f"{request.method} {request.url.path} is not implemented by this service")


async def _no_groups(request: Request) -> Response:
    raise ScimError(404, "Groups are not supported by this service: it provisions Users only")


async def _scim_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ScimError)
    response: Response = error_response(error)
    return response


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if error.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    elif error.status_code == 404:
        detail = f"no such endpoint: {request.url.path}"
    else:
        detail = str(error.detail)
    response: Response = error_response(
        ScimError(error.status_code, detail, headers=dict(error.headers or {}))
    )
    return response


async def _server_error(request: Request, error: Exception) -> Response:
    # The type only: an exception's text may carry data from the request.
    logger.error(
        "unexpected error answering %s %s: %s", request.method, request.url.path, type(error).__name__
    )
    response: Response = error_response(ScimError(500, f"internal error ({type(error).__name__})"))
    return response
