"""What a provisioning service reports back: the job's small JSON result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal[
    "created", "updated", "unchanged", "deleted", "absent", "superseded", "pending", "waiting", "refused"
]


@dataclass(frozen=True, slots=True)
class UserOutcome:
    """The status of one user after a job, and the user's state (never the password hash)."""

    status: Status
    email: str
    user_id: int | None = None
    role: str | None = None
    is_active: bool | None = None

    def as_result(self) -> dict[str, object]:
        """The JSON-ready job result (fields that are None are left out)."""
        # Not dataclasses.asdict: it deep-copies every value, a noticeable cost on every job.
        return {name: value for name in self.__slots__ if (value := getattr(self, name)) is not None}


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What a batch did: counts, and every rejected entry with its reason."""

    created: int
    updated: int
    unchanged: int
    superseded: int
    rejected: list[dict[str, object]]

    def as_result(self) -> dict[str, object]:
        """The JSON-ready job result."""
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "superseded": self.superseded,
            "rejected": len(self.rejected),
            "rejections": self.rejected,
        }
