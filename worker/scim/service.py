"""What the request handlers share: settings, the database and the provisioning client."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request

from worker.client import ProvisioningClient
from worker.db.session import SessionFactory
from worker.settings import Settings


@dataclass(frozen=True)
class ScimService:
    """Built by the application's lifespan; one per process."""

    settings: Settings
    engine: AsyncEngine
    sessions: SessionFactory
    client: ProvisioningClient


def service_of(request: Request) -> ScimService:
    """The service of the application handling `request`."""
    service: ScimService = request.app.state.service
    return service
