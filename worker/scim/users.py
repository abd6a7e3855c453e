"""/Users: create, read, list with filters, replace, patch, delete (RFC 7644 §3).

Reads come from PostgreSQL; writes are jobs (`worker.scim.jobs`), and a write answers with the
resource as the database holds it once its jobs finished:

- POST: 409 uniqueness when a user with that userName (any letter case) exists, else
  `provision_user`, followed by `deactivate_user` (stamped later) for `active: false`. A POST
  retried after a 503 whose job has since created the user also gets 409.
- PUT and PATCH: one `update_user` with the fields the request names (role, active, externalId,
  password); a request whose one change is `active: false` is a `deactivate_user`; a request that
  changes nothing we keep enqueues nothing. A userName change is refused (400 mutability) unless
  it names the same person (letter case).
- DELETE: `delete_user`, 204.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from scim2_models import Context, ListResponse
from starlette.requests import Request
from starlette.responses import Response

from worker.db.models import User
from worker.jobs.identity import identity_key
from worker.repositories.user import UserRepository
from worker.scim.bodies import read_json
from worker.scim.discovery import DEFAULT_COUNT, MAX_RESULTS
from worker.scim.errors import ScimError, bad_request, not_found
from worker.scim.filters import where_clause
from worker.scim.jobs import RequestJobs, request_digest
from worker.scim.mapping import UserChanges, UserResource, changes_of_resource, same_person
from worker.scim.patching import patch_changes
from worker.scim.reads import page_of_users, user_id_of
from worker.scim.resources import location, render, response_parameters, user_model
from worker.scim.responses import scim_response
from worker.scim.service import ScimService, service_of


def _base_url(request: Request) -> str:
    return str(request.base_url)


async def list_users(request: Request) -> Response:
    """GET /Users: a page of the users a filter selects (inactive ones included), ordered by id."""
    service = service_of(request)
    query = request.query_params
    where = where_clause(query["filter"]) if query.get("filter") else None
    start_index = max(1, _integer(query.get("startIndex"), "startIndex", default=1))
    count = min(MAX_RESULTS, max(0, _integer(query.get("count"), "count", default=DEFAULT_COUNT)))
    parameters = response_parameters(query.get("attributes"), query.get("excludedAttributes"))
    async with service.sessions() as session:
        total, users = await page_of_users(session, where, offset=start_index - 1, limit=count)
    base = _base_url(request)
    page = ListResponse[UserResource](
        total_results=total,
        start_index=start_index,
        items_per_page=len(users),
        resources=[user_model(user, base) for user in users],
    )
    return scim_response(
        page.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE, response_parameters=parameters)
    )


def _integer(value: str | None, name: str, *, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise bad_request("invalidValue", f"{name} must be an integer") from None


async def get_user(request: Request) -> Response:
    """GET /Users/{id}."""
    service = service_of(request)
    user = await _existing(service, request.path_params["user_id"])
    parameters = response_parameters(
        request.query_params.get("attributes"), request.query_params.get("excludedAttributes")
    )
    return scim_response(render(user, _base_url(request), parameters))


async def create_user(request: Request) -> Response:
    """POST /Users."""
    service = service_of(request)
    body = await read_json(request, service.settings.scim_max_body)
    changes = changes_of_resource(body, Context.RESOURCE_CREATION_REQUEST)
    assert changes.user_name is not None  # checked_email refuses a body without one
    email = changes.user_name
    key = identity_key(email)
    _check_password(service, changes)
    async with service.sessions() as session:
        if await UserRepository(session).get_user_by_key(key) is not None:
            raise ScimError(409, f"a user with userName {email} exists already", scim_type="uniqueness")
    role = changes.role or service.settings.scim_default_role
    client = service.client

    async def run(jobs: RequestJobs) -> Response:
        await jobs.submit(
            "provision_user",
            lambda job_id, as_of: client.provision_user(
                email=email,
                role=role,
                password=changes.password,
                external_id=changes.external_id,
                job_id=job_id,
                as_of=as_of,
            ),
        )
        if changes.active is False:
            await jobs.submit(
                "deactivate_user",
                lambda job_id, as_of: client.deactivate_user(email=email, job_id=job_id, as_of=as_of),
            )
        await jobs.wait()
        async with service.sessions() as session:
            user = await UserRepository(session).get_user_by_key(key)
        if user is None:
            raise ScimError(409, f"a newer command for {email} (a delete) superseded this create")
        base = _base_url(request)
        return scim_response(render(user, base), status=201, headers={"Location": location(base, user.id)})

    return await _write(request, service, body, run)


async def replace_user(request: Request) -> Response:
    """PUT /Users/{id}: the fields the resource carries; those it leaves out stay as they are."""
    service = service_of(request)
    user = await _existing(service, request.path_params["user_id"])
    body = await read_json(request, service.settings.scim_max_body)
    changes = changes_of_resource(body, Context.RESOURCE_REPLACEMENT_REQUEST)
    return await _update(request, service, user, body, changes)


async def patch_user(request: Request) -> Response:
    """PATCH /Users/{id}."""
    service = service_of(request)
    user = await _existing(service, request.path_params["user_id"])
    body = await read_json(request, service.settings.scim_max_body)
    changes = patch_changes(body, default_role=service.settings.scim_default_role)
    return await _update(request, service, user, body, changes)


async def delete_user(request: Request) -> Response:
    """DELETE /Users/{id}: 204."""
    service = service_of(request)
    user = await _existing(service, request.path_params["user_id"])
    client = service.client

    async def run(jobs: RequestJobs) -> Response:
        await jobs.submit(
            "delete_user",
            lambda job_id, as_of: client.delete_user(email=user.email, job_id=job_id, as_of=as_of),
        )
        await jobs.wait()
        return Response(status_code=204)

    return await _write(request, service, None, run)


async def _update(
    request: Request, service: ScimService, user: User, body: Any, changes: UserChanges
) -> Response:
    if changes.user_name is not None and not same_person(changes.user_name, user.key):
        raise bad_request(
            "mutability",
            "userName cannot be changed (it is the user's email and identity): delete and create instead",
        )
    _check_password(service, changes)
    client = service.client
    email = user.email
    user_id = user.id

    async def run(jobs: RequestJobs) -> Response:
        if changes.only_deactivates:
            await jobs.submit(
                "deactivate_user",
                lambda job_id, as_of: client.deactivate_user(email=email, job_id=job_id, as_of=as_of),
            )
        elif not changes.empty:
            await jobs.submit(
                "update_user",
                lambda job_id, as_of: client.update_user(
                    email=email,
                    role=changes.role,
                    active=changes.active,
                    external_id=changes.external_id,
                    password=changes.password,
                    job_id=job_id,
                    as_of=as_of,
                ),
            )
        await jobs.wait(needs_user=True)
        async with service.sessions() as session:
            current = await UserRepository(session).get(user_id)
        if current is None:
            raise not_found("the user no longer exists")
        return scim_response(render(current, _base_url(request)))

    return await _write(request, service, body, run)


async def _write(
    request: Request, service: ScimService, body: Any, run: Callable[[RequestJobs], Awaitable[Response]]
) -> Response:
    """Run a write under the request's derived job ids; count it answered unless it was a 503."""
    digest = request_digest(request.state.token_digest, request.method, request.url.path, body)
    jobs = RequestJobs(
        service.client,
        digest,
        within=service.settings.scim_job_wait,
        keep_result=service.settings.keep_result,
    )
    try:
        response = await run(jobs)
    except ScimError as error:
        if error.status != 503:
            await jobs.answered()
        raise
    await jobs.answered()
    return response


def _check_password(service: ScimService, changes: UserChanges) -> None:
    if changes.password is not None and not service.settings.seal_key_list:
        raise bad_request(
            "invalidValue",
            "passwords are not accepted: this service has no SEAL_KEYS to seal them for the worker "
            "(send the user without a password, or configure SEAL_KEYS)",
        )


async def _existing(service: ScimService, resource_id: str) -> User:
    user_id = user_id_of(resource_id)
    if user_id is not None:
        async with service.sessions() as session:
            user = await UserRepository(session).get(user_id)
        if user is not None:
            return user
    raise not_found(f"no user with id {resource_id}")
