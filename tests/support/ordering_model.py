"""The plain sequential model of the job contract: commands applied one by one in stamp order.

The worker must end every user in the state this model computes, whatever order the commands
actually ran in. The model knows nothing of stamps on fields, tombstones or intents.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

FUNCTIONS = ("provision_user", "set_user_role", "deactivate_user", "delete_user", "provision_users")


@dataclass(frozen=True)
class Command:
    """One job: its function, arguments and stamp (as_of µs, job id)."""

    function: str
    email: str
    as_of: int
    job_id: str
    role: str | None = None
    password_hash: str | None = None

    @property
    def stamp(self) -> tuple[int, str]:
        """Where the command stands among the user's commands."""
        return self.as_of, self.job_id

    def arguments(self) -> dict[str, object]:
        """The job's keyword arguments, as an enqueuer sends them."""
        if self.function == "provision_users":
            entry: dict[str, object] = {"email": self.email, "role": self.role}
            if self.password_hash is not None:
                entry["password_hash"] = self.password_hash
            return {"users": [entry], "as_of": self.as_of}
        arguments: dict[str, object] = {"email": self.email, "as_of": self.as_of}
        if self.role is not None:
            arguments["role"] = self.role
        if self.password_hash is not None:
            arguments["password_hash"] = self.password_hash
        return arguments


@dataclass(frozen=True)
class State:
    """A user as the database must hold it (the email compared as spelled)."""

    email: str
    role: str
    is_active: bool
    hashed_password: str | None


def final_states(commands: Iterable[Command]) -> dict[str, State]:
    """Each email's user (absent ones left out) after applying `commands` in stamp order."""
    users: dict[str, State] = {}
    for command in sorted(commands, key=lambda c: c.stamp):
        key = command.email.lower()
        user = users.get(key)
        if command.function in {"provision_user", "provision_users"}:
            assert command.role is not None
            users[key] = State(
                email=command.email,  # the newest provision's spelling
                role=command.role,
                is_active=True,
                hashed_password=command.password_hash
                if command.password_hash is not None
                else (user.hashed_password if user else None),
            )
        elif user is None:
            continue  # set_user_role, deactivate_user, delete_user of no user change nothing
        elif command.function == "set_user_role":
            assert command.role is not None
            users[key] = State(user.email, command.role, user.is_active, user.hashed_password)
        elif command.function == "deactivate_user":
            users[key] = State(user.email, user.role, False, user.hashed_password)
        elif command.function == "delete_user":
            del users[key]
        else:
            raise AssertionError(f"unknown function {command.function}")
    return users
