"""The job contract: one pydantic model per task's keyword arguments (see docs/jobs.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, NotRequired, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict

from worker.jobs.emails import Email
from worker.jobs.errors import InvalidPayload
from worker.jobs.identity import identity_key
from worker.jobs.stamps import AsOf
from worker.passwords.policy import (
    ARGON2ID_FORMAT,
    MIN_MEMORY_KIB,
    MIN_PARALLELISM,
    MIN_TIME_COST,
    is_argon2id_hash,
    meets_minimum,
)

RoleName = Literal["admin", "member", "viewer"]
"""The `Role` enum's values, as a type strict pydantic and mypy can check (a unit test ties them)."""


def _argon2id(value: str) -> str:
    if not is_argon2id_hash(value):
        # Never echo the value: it may be a password sent by mistake.
        raise PydanticCustomError(
            "argon2id_hash",
            "must be an argon2id PHC string ({format}); plaintext passwords are refused, "
            "hash with worker.passwords.policy.hash_password()",
            {"format": ARGON2ID_FORMAT},
        )
    if not meets_minimum(value):
        raise PydanticCustomError(
            "argon2id_too_weak",
            "argon2id parameters are below the minimum (m >= {m} KiB, t >= {t}, p >= {p}): hash it again",
            {"m": MIN_MEMORY_KIB, "t": MIN_TIME_COST, "p": MIN_PARALLELISM},
        )
    return value


def _fernet_token(value: str) -> str:
    if not value.startswith("gAAAAA") or not value.replace("-", "").replace("_", "").rstrip("=").isalnum():
        raise PydanticCustomError(
            "sealed_password",
            "must be a Fernet token (sealed with a SEAL_KEYS key, see docs/jobs.md); "
            "plaintext passwords are refused",
        )
    return value


Argon2idHash = Annotated[str, AfterValidator(_argon2id)]
SealedPassword = Annotated[str, Field(min_length=100, max_length=8192), AfterValidator(_fernet_token)]
ExternalId = Annotated[str, Field(min_length=1, max_length=255)]
"""The person's id in the system of record (SCIM's externalId): kept as sent, compared case-exact."""


class Payload(BaseModel):
    """Base for job arguments: strict types, no unknown fields, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, hide_input_in_errors=True)


StampJobId = Annotated[str, Field(min_length=1, max_length=256)]
"""The job id of the command whose stamp a job carries: set by `retry`, so that a command sent
again keeps its whole stamp (as_of, job id), and with it its place among equal as_of values."""


class UserRef(Payload):
    """Arguments naming one user by email (any letter case), and optionally when the command was made."""

    email: Email
    # Set by the system of record; without it the job's enqueue time orders the command.
    as_of: AsOf | None = None
    stamp_job_id: StampJobId | None = None


class UserWithRole(UserRef):
    """Arguments naming one user and the role it must have."""

    role: RoleName


class WithPassword(Payload):
    """A password, as an argon2id hash or sealed for the worker to hash; at most one of the two."""

    password_hash: Argon2idHash | None = None
    password_sealed: SealedPassword | None = None

    @model_validator(mode="after")
    def _one_password(self) -> WithPassword:
        if self.password_hash is not None and self.password_sealed is not None:
            raise PydanticCustomError("two_passwords", "give password_hash or password_sealed, not both")
        return self


class ProvisionUser(UserWithRole, WithPassword):
    """Ensure an active user with this email and role (and password, external id, when given) exists."""

    external_id: ExternalId | None = None


class UpdateUser(UserRef, WithPassword):
    """Change only the named fields of a provisioned user (role, active, password, external id).

    A user not provisioned yet is waited for: the job is tried again (`NotProvisionedYet`).
    """

    role: RoleName | None = None
    active: bool | None = None
    external_id: ExternalId | None = None

    @model_validator(mode="after")
    def _names_a_field(self) -> UpdateUser:
        fields = (self.role, self.active, self.external_id, self.password_hash, self.password_sealed)
        if all(value is None for value in fields):
            raise PydanticCustomError(
                "nothing_to_update",
                "name at least one field to change: role, active, external_id, password_hash or "
                "password_sealed",
            )
        return self


class SetUserRole(UserWithRole):
    """Ensure an existing user has this role."""


class DeactivateUser(UserRef):
    """Ensure no active user has this email."""


class DeleteUser(UserRef):
    """Ensure no user has this email."""


BULK_HARD_LIMIT = 10_000
"""No batch is ever larger than this, whatever BULK_MAX_BATCH says."""


class BulkUser(TypedDict):
    """One entry of a `provision_users` batch: as `provision_user`, without sealed passwords.

    A TypedDict rather than a model: a batch validates a thousand of them, and plain dicts
    are built faster than model instances.
    """

    __pydantic_config__ = Payload.model_config  # type: ignore[misc]
    email: Email
    role: RoleName
    password_hash: NotRequired[Argon2idHash | None]
    external_id: NotRequired[ExternalId | None]
    as_of: NotRequired[AsOf | None]


class ProvisionUsers(Payload):
    """Apply a batch of `provision_user` entries in one transaction; bad entries are reported, not applied."""

    # Entries are validated one by one (see parse_bulk_entries), so that one bad entry
    # rejects only itself; here only the batch's shape is checked.
    users: Annotated[list[Any], Field(min_length=1, max_length=BULK_HARD_LIMIT)]
    # Every entry's stamp, unless the entry has its own as_of; without either, the enqueue time.
    as_of: AsOf | None = None
    stamp_job_id: StampJobId | None = None


PAYLOADS: dict[str, type[Payload]] = {
    "provision_user": ProvisionUser,
    "set_user_role": SetUserRole,
    "update_user": UpdateUser,
    "deactivate_user": DeactivateUser,
    "delete_user": DeleteUser,
    "provision_users": ProvisionUsers,
}
"""Every job function's name and the model its keyword arguments must match."""

PayloadT = TypeVar("PayloadT", bound=Payload)


def describe_validation_error(error: ValidationError) -> str:
    """`field: problem; …` without any input value (inputs may be secrets)."""
    problems = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(part) for part in item["loc"]) or "payload"
        problems.append(f"{where}: {item['msg']}")
    return "; ".join(problems)


def parse_payload(
    model: type[PayloadT], function: str, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> PayloadT:
    """Validate a job's arguments against `model`, or raise `InvalidPayload` naming every problem."""
    if args:
        raise InvalidPayload(
            f'{function}: takes keyword arguments only (JSON field "k"), got {len(args)} positional',
            function=function,
        )
    try:
        return model.model_validate(dict(kwargs))
    except ValidationError as error:
        raise InvalidPayload(
            f"{function}: invalid payload: {describe_validation_error(error)}", function=function
        ) from None


_BULK_USER = TypeAdapter(BulkUser)
_BULK_USERS = TypeAdapter(list[BulkUser])
BULK_SLICE = 250
"""Batch entries validated between two yields to the event loop: short enough that other jobs
never wait long for the loop, big enough that one pydantic call covers many entries."""


async def parse_bulk_entries(
    entries: Sequence[Any],
) -> tuple[list[tuple[int, BulkUser]], list[dict[str, object]]]:
    """Validate each batch entry: (index, entry) for the valid ones, and {index, error} for the rest.

    An email that already appeared earlier in the batch (in any letter case) is rejected: one
    batch states each user once. Rejections come in index order. Entries are validated a slice
    at a time, yielding to the event loop in between, so a big batch never stalls other jobs.
    """
    parsed: list[tuple[int, BulkUser]] = []
    problems: list[tuple[int, str]] = []
    for start in range(0, len(entries), BULK_SLICE):
        if start:
            await asyncio.sleep(0)
        part = entries[start : start + BULK_SLICE]
        try:  # the usual case, all valid: one call for the whole slice
            parsed += enumerate(_BULK_USERS.validate_python(part), start)
        except ValidationError:
            for index, entry in enumerate(part, start):
                try:
                    parsed.append((index, _BULK_USER.validate_python(entry)))
                except ValidationError as error:
                    problems.append((index, describe_validation_error(error)))
    valid: list[tuple[int, BulkUser]] = []
    first_seen: dict[str, int] = {}
    for index, user in parsed:
        key = identity_key(user["email"])
        if key in first_seen:
            problems.append((index, f"email: duplicate of entry {first_seen[key]}"))
        else:
            first_seen[key] = index
            valid.append((index, user))
    return valid, [{"index": index, "error": error} for index, error in sorted(problems)]
